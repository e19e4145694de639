"""`vidflow`: a command-line client for the Vidflow gateway's OpenAI-compatible HTTP API.

Modules: `args` (the command line), `config` (base URL and API key: flag, then environment, then
default), `create_request` (the create body), `client` (the HTTP adapter, aiohttp), `commands`
(what each subcommand does, and `main`), `output` (tables, summaries, JSON) and `progress` (the
`--watch` progress line).
"""

__version__ = "0.1.0"
