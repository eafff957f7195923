"""The geocamat command-line app (click). Thin: parse, call the library, print."""
