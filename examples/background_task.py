"""A sync call in an `async def` background task blocks the event loop after the response.

`GET /orders/{order_id}/receipt` answers at once and hands `email_receipt` to FastAPI's
`BackgroundTasks`; the task runs on the event loop after the response is sent, and its
`time.sleep(0.04)` (a stand-in for a sync SMTP client) holds the loop for 40 ms per request:
every other request waits, though this route's own latency looks fine. Its stacks show the
response, not the endpoint: asgiprof gives the line to the route whose endpoint added the
task (`add_task(email_receipt, ...)` in its source). The fix: await an async client, or make
the task a plain `def`, which Starlette runs in its threadpool, as `GET /orders/{order_id}/
invoice` does with `archive_invoice`.

    uvicorn background_task:app --port 8000 --loop asyncio
"""

from __future__ import annotations

import time

from fastapi import BackgroundTasks, FastAPI

# Paths `asgiprof demo` and the tests load.
LOAD_PATHS = ("/orders/1/receipt", "/orders/2/invoice")

app = FastAPI(title="background_task")


async def email_receipt(order_id: int) -> None:
    time.sleep(0.04)  # planted: sync SMTP in an async background task blocks the loop


def archive_invoice(order_id: int) -> None:
    time.sleep(0.04)  # a `def` task runs in the threadpool: it holds a worker, not the loop


@app.get("/orders/{order_id}/receipt")
async def receipt(order_id: int, tasks: BackgroundTasks) -> dict[str, int]:
    tasks.add_task(email_receipt, order_id)
    return {"order": order_id}


@app.get("/orders/{order_id}/invoice")
async def invoice(order_id: int, tasks: BackgroundTasks) -> dict[str, int]:
    tasks.add_task(archive_invoice, order_id)
    return {"order": order_id}
