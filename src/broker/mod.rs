//! RabbitMQ: connection, topology, consuming, publishing with confirms.
