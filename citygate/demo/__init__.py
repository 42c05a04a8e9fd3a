"""``citygate demo``: the whole system on one machine, live, with an audit at the end."""
