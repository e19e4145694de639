"""Provider simulator: a stand-in for a hosted video model that speaks OpenAI's Videos API.

It renders real MP4s (prompt text burned over a moving test pattern) so the rest of the platform
can be exercised end to end without a GPU or a vendor account. `python -m simulator` runs it.
"""
