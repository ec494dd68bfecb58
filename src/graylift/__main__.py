from graylift.cli import main

main()
