"""Herald: chat-ops notification bot for IT support."""
