"""The topic catalog: every Kafka topic cityops reads or writes, and the admin that creates them."""
