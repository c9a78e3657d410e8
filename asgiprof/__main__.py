from asgiprof.cli import main

main()
