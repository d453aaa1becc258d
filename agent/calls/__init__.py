"""A call's life: going live in exactly one worker, running, ending exactly once
(`lifecycle`, `session`), what it carries and may spend before it starts
(`precall`, `extraction_budget`), its money at Stripe (`payments`), keeping and
reconciling calls across workers (`ownership`, `reconcile`), and the Twilio side
of a phone call (`telephony`, `outbound`). docs/calls.md tells the whole story.
"""
