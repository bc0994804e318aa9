"""All of Switchboard's logic. Imports no Qt: the GUI is a thin layer over this package."""
