package bench;

import com.datastax.driver.core.Cluster;
import com.datastax.driver.core.ConsistencyLevel;
import com.datastax.driver.core.PoolingOptions;
import com.datastax.driver.core.QueryOptions;
import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Map;
import org.apache.flink.api.common.JobExecutionResult;
import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.serialization.SimpleStringSchema;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.java.tuple.Tuple3;
import org.apache.flink.connector.kafka.source.KafkaSource;
import org.apache.flink.connector.kafka.source.enumerator.initializer.OffsetsInitializer;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.JsonNode;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.flink.streaming.api.CheckpointingMode;
import org.apache.flink.streaming.api.datastream.DataStream;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.connectors.cassandra.CassandraCommitter;
import org.apache.flink.streaming.connectors.cassandra.CassandraSink;
import org.apache.flink.streaming.connectors.cassandra.ClusterBuilder;

/**
 * The Flink side of the benchmark: reads the benchmark's pre-filled topic from its start to its end
 * (a bounded Kafka source) in a local MiniCluster, parses each JSON record {@code [id, counter, seq]}
 * and writes it with Flink's Cassandra sink — with its write-ahead log and {@link CassandraCommitter}
 * ({@code --mode wal}) or plain, at least once ({@code --mode plain}) — under exactly-once checkpoints.
 *
 * <p>At the end it prints one line the benchmark reads: the job's net runtime, the process's CPU
 * seconds and its peak resident set.
 */
public final class FlinkSinkJob {
    private FlinkSinkJob() {}

    public static void main(String[] args) throws Exception {
        Map<String, String> options = parse(args);
        String bootstrap = options.get("bootstrap");
        String topic = options.get("topic");
        String host = options.get("cassandra-host");
        int port = Integer.parseInt(options.getOrDefault("cassandra-port", "9042"));
        String keyspace = options.get("keyspace");
        String table = options.get("table");
        String mode = options.get("mode");
        int parallelism = Integer.parseInt(options.getOrDefault("parallelism", "2"));
        long checkpointMillis = Long.parseLong(options.getOrDefault("checkpoint-ms", "1000"));

        StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment();
        env.setParallelism(parallelism);
        env.enableCheckpointing(checkpointMillis, CheckpointingMode.EXACTLY_ONCE);
        // The write-ahead log keeps a checkpoint's records in the sink's state; the default storage,
        // in the job manager's memory, refuses a state over 5 MiB, which one slow checkpoint exceeds.
        env.getCheckpointConfig()
                .setCheckpointStorage(
                        Path.of(options.get("checkpoint-dir")).toAbsolutePath().toUri().toString());

        KafkaSource<String> source =
                KafkaSource.<String>builder()
                        .setBootstrapServers(bootstrap)
                        .setTopics(topic)
                        .setGroupId("flink-" + table)
                        .setStartingOffsets(OffsetsInitializer.earliest())
                        .setBounded(OffsetsInitializer.latest())
                        .setValueOnlyDeserializer(new SimpleStringSchema())
                        .build();
        DataStream<Tuple3<String, Integer, Long>> rows =
                env.fromSource(source, WatermarkStrategy.noWatermarks(), "kafka")
                        .map(FlinkSinkJob::row)
                        .returns(Types.TUPLE(Types.STRING, Types.INT, Types.LONG));

        ClusterBuilder cluster = new Builder(host, port);
        CassandraSink.CassandraSinkBuilder<Tuple3<String, Integer, Long>> sink =
                CassandraSink.addSink(rows)
                        .setQuery(
                                "INSERT INTO " + keyspace + "." + table
                                        + " (id, counter, seq) VALUES (?, ?, ?);")
                        .setClusterBuilder(cluster);
        switch (mode) {
            case "wal":
                sink.enableWriteAheadLog(new CassandraCommitter(cluster, keyspace));
                break;
            case "plain":
                break;
            default:
                throw new IllegalArgumentException("--mode must be wal or plain, not " + mode);
        }
        sink.build();

        JobExecutionResult result = env.execute("flink-cassandra-sink-" + mode);
        double cpuSeconds =
                ((com.sun.management.OperatingSystemMXBean)
                                        ManagementFactory.getOperatingSystemMXBean())
                                .getProcessCpuTime()
                        / 1e9;
        System.out.printf(
                "flink-sink-job: net_runtime_ms=%d cpu_seconds=%.2f peak_rss_mib=%.1f%n",
                result.getNetRuntime(), cpuSeconds, peakRssMib());
        // The MiniCluster's threads would keep the JVM up a while longer: the figures are out.
        System.exit(0);
    }

    /** One benchmark record, {@code ["id17", 3, 1234]}, as the table's row. */
    private static Tuple3<String, Integer, Long> row(String json) throws Exception {
        JsonNode array = Json.MAPPER.readTree(json);
        return Tuple3.of(array.get(0).asText(), array.get(1).asInt(), array.get(2).asLong());
    }

    private static double peakRssMib() throws Exception {
        for (String line : Files.readAllLines(Path.of("/proc/self/status"))) {
            if (line.startsWith("VmHWM:")) {
                return Long.parseLong(line.replaceAll("[^0-9]", "")) / 1024.0;
            }
        }
        return Double.NaN;
    }

    private static Map<String, String> parse(String[] args) {
        Map<String, String> options = new HashMap<>();
        for (int i = 0; i + 1 < args.length; i += 2) {
            if (!args[i].startsWith("--")) {
                throw new IllegalArgumentException("expected --name value, found " + args[i]);
            }
            options.put(args[i].substring(2), args[i + 1]);
        }
        for (String required :
                new String[] {
                    "bootstrap", "topic", "cassandra-host", "keyspace", "table", "mode", "checkpoint-dir"
                }) {
            if (!options.containsKey(required)) {
                throw new IllegalArgumentException("--" + required + " is required");
            }
        }
        return options;
    }

    /** One parser per JVM: ObjectMapper is thread-safe once configured. */
    private static final class Json {
        static final ObjectMapper MAPPER = new ObjectMapper();
    }

    /**
     * The connection each sink subtask and the committer open. LOCAL_QUORUM as the worker writes. The
     * write-ahead log sends a whole checkpoint at once: the driver's default 1,024 requests per
     * connection go to Cassandra and the rest wait in the driver's queue, which must hold a checkpoint
     * and wait long enough (with the defaults, 256 requests and 5 s, it fails with BusyPoolException;
     * with no bound per connection, Cassandra times writes out).
     */
    private static final class Builder extends ClusterBuilder {
        private static final long serialVersionUID = 1L;
        private final String host;
        private final int port;

        Builder(String host, int port) {
            this.host = host;
            this.port = port;
        }

        @Override
        protected Cluster buildCluster(Cluster.Builder builder) {
            return builder.addContactPoint(host)
                    .withPort(port)
                    .withQueryOptions(
                            new QueryOptions().setConsistencyLevel(ConsistencyLevel.LOCAL_QUORUM))
                    .withPoolingOptions(
                            new PoolingOptions()
                                    .setMaxQueueSize(1_000_000)
                                    .setPoolTimeoutMillis(120_000))
                    .build();
        }
    }
}
