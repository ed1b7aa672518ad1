"""Learning: the asynchronous learner, the decision log, warm start and the learner process."""
