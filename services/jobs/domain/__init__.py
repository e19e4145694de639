"""Pure job logic: what a valid request is, and how a job moves through its stages."""
