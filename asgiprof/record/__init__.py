"""Everything that touches live processes: the target, py-spy, psutil, the app's route
table, the load. Writes the output directory only through `asgiprof.store`."""
