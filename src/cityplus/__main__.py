from cityplus.cli import app

app()
