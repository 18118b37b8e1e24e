"""Shared by every test directory. pytest puts this folder on sys.path for this file, so test
modules anywhere below can import the helpers next to it (``from inprocess import ...``; the
services under a real gunicorn: ``from served import ...``; HTTP to them:
``from rawhttp import ...``)."""
