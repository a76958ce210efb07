"""Clients of the API: the one door every component (controllers, scheduler, node agent) goes through."""
