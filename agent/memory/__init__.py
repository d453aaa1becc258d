"""What a persona remembers: relationships and their memory tiers, the composite
system prompt built from them, the call transcript, and the post-call extraction
that turns a transcript into new memories.
"""
