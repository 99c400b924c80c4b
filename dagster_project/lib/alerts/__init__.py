"""Budget alerts: decided from the marts, recorded once, delivered once.

- :mod:`.records`: the records an alert is made of, and its identity (pure);
- :mod:`.rules`: which alerts the marts justify at a given time (pure);
- :mod:`.messages`: the text and the payloads people receive (pure);
- :mod:`.marts`: reading the budget marts, mirroring the alerts next to them;
- :mod:`.ledger`: the durable record of every alert and message (SQLite);
- :mod:`.delivery`: sending the ledger's outbox to the destinations, exactly once each.
"""
