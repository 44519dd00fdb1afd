"""The web chat: visitor sessions, their transcripts, and the live fan-out to open sockets."""
