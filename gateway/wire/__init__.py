"""What goes over the wire between the gateway and its clients, shared by both sides."""
