"""Our Pipecat frame processors: metering, the budget guard, the transcript."""
