"""Run one case of a benchmark in a fresh Python process (its own peak RSS) and read the JSON it prints last."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def run_isolated(script: str, *args: str, env: dict | None = None) -> dict:
    """``python SCRIPT ARGS...`` with this environment (plus ``env``); the dict of its last stdout line."""
    out = subprocess.run([sys.executable, script, *args], check=True, capture_output=True, text=True,
                         env={**os.environ, **(env or {})})
    return json.loads(out.stdout.strip().splitlines()[-1])
