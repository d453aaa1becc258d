"""Developer tools: simulate a phone call, run the vendors' fakes locally."""
