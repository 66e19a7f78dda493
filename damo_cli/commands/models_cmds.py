"""placeholder"""
import typer

app = typer.Typer(help="List model cards and whether each is ready offline.")
