"""What comes back by mail: read the inbound mailbox, tell bounces, delays, complaints, mailed
unsubscribes and auto-replies apart, and suppress whom they call for."""
