from loadkit.cli import entry

entry()
