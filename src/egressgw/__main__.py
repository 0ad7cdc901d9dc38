from egressgw.cli.main import main

main()
