"""The partners service: public event topics, partner accounts and subscriptions, signed
webhooks with replay, the pull API and the event catalogue."""
