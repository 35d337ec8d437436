"""The message bus: one interface, two implementations (Kafka for distributed, memory for embedded)."""

from shared.bus.base import Bus, Message, Record, Subscriber, bus_from_url

__all__ = ["Bus", "Message", "Record", "Subscriber", "bus_from_url"]
