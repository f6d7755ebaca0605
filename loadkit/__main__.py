from loadkit.launch import entry

entry()
