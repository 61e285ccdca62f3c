"""builddoctor: finds why a llama.cpp build is slow on this machine, and fixes it."""

__version__ = "0.1.0"
