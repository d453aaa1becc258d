"""The HTTP layer: one router per surface, the shapes they speak, and the translation.

- `twilio`: Twilio's signed webhooks and the media stream of a phone call.
- `user`: the user API (bearer JWT); `admin`: the operator API (ADMIN_TOKEN);
  `room`: the browser test room; `ops`: health and metrics.
- `deps`: the dependencies every route uses (where things are, who is asking).
- `errors`: the domain's refusals mapped to statuses, and their OpenAPI entries.
- `openapi`: the document, made exact where only this server knows the answer.
- `schemas/`: request and response shapes; `views/`: domain results into those shapes.

Routes parse, authorise and delegate to `agent/` and `pipeline/`; nothing below
imports this package.
"""
