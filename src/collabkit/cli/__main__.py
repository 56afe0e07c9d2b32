from collabkit.cli import app

app()
