"""A call's life: opening it against the budget and the card, running it, ending it
exactly once and reconciling calls whose process died (`lifecycle`), and the
Twilio REST side of a phone call (`telephony`).
"""
