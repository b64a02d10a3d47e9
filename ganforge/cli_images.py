"""`ganforge sample` and `ganforge evaluate` (filled in with image support)."""

from __future__ import annotations

import argparse


def add_parsers(sub: argparse._SubParsersAction) -> None:
    return None


def run(args: argparse.Namespace) -> int:
    raise SystemExit(f"unknown command {args.command}")
