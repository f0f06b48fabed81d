module cassandra-sink.invalid/pause

go 1.22
