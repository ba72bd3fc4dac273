"""The embedded media server: WHIP ingest, WHEP playback, RTP forwarding without transcoding.

No Django here (an import-linter contract enforces it). Entry point: `liveclass.media.server.main`.
Modules: server (config, app, main), endpoints (HTTP), inputs (sessions), peers (aiortc
control plane and its private hooks), forwarding (the packet path), events (webhooks),
tokens (JWT and webhook signatures shared with web).
"""
