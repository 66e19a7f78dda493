from damo_cli.cli import main

main()
