from omostc.cli import main

main()
