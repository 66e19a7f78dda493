from damo_cli.entry import main

main()
