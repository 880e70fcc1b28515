// A partner's producer written the way an ordinary Java partner would write it: the official
// kafka-clients KafkaProducer, acks=all, idempotent, a compression codec of the partner's choice,
// optionally a transaction that is committed or aborted.
//
// Compiled and run by tests/partner_java.py:
//   javac -d OUT -cp 'kafka-broker/libs/*' tests/java/PartnerProducer.java
//   java -cp 'OUT:kafka-broker/libs/*' PartnerProducer BOOTSTRAP TOPIC COMPRESSION MODE < records
//
// COMPRESSION: none, gzip, lz4, snappy or zstd. MODE: plain, commit or abort (a transactional
// producer that commits or aborts everything it sent). stdin: one record a line,
// "PARTITION KEY_HEX VALUE_HEX [HEADER_KEY=HEADER_VALUE_HEX ...]"; records on one partition
// are sent in order and, lingering, end up in as few batches as the client makes.
// Prints "sent N" when every send was acknowledged (and the transaction ended), exits 1 otherwise.
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.Future;

import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public final class PartnerProducer {
    public static void main(String[] args) throws Exception {
        if (args.length != 4) {
            System.err.println("usage: PartnerProducer BOOTSTRAP TOPIC COMPRESSION plain|commit|abort");
            System.exit(2);
        }
        String bootstrap = args[0], topic = args[1], compression = args[2], mode = args[3];
        Properties props = new Properties();
        props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ProducerConfig.ACKS_CONFIG, "all");
        props.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        props.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, compression);
        props.put(ProducerConfig.LINGER_MS_CONFIG, "50");
        props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        boolean transactional = !mode.equals("plain");
        if (transactional) {
            props.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG,
                      "partner-java-" + topic + "-" + System.nanoTime());
        }
        HexFormat hex = HexFormat.of();
        List<ProducerRecord<byte[], byte[]>> records = new ArrayList<>();
        try (BufferedReader in = new BufferedReader(
                new InputStreamReader(System.in, StandardCharsets.US_ASCII))) {
            String line;
            while ((line = in.readLine()) != null) {
                line = line.strip();
                if (line.isEmpty()) continue;
                String[] parts = line.split(" ");
                ProducerRecord<byte[], byte[]> record = new ProducerRecord<>(
                    topic, Integer.parseInt(parts[0]), hex.parseHex(parts[1]), hex.parseHex(parts[2]));
                for (int i = 3; i < parts.length; i++) {
                    String[] header = parts[i].split("=", 2);
                    record.headers().add(header[0], hex.parseHex(header[1]));
                }
                records.add(record);
            }
        }
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(props)) {
            if (transactional) {
                producer.initTransactions();
                producer.beginTransaction();
            }
            List<Future<RecordMetadata>> sends = new ArrayList<>();
            for (ProducerRecord<byte[], byte[]> record : records) sends.add(producer.send(record));
            producer.flush();
            for (Future<RecordMetadata> send : sends) send.get();
            if (mode.equals("commit")) producer.commitTransaction();
            if (mode.equals("abort")) producer.abortTransaction();
        }
        System.out.println("sent " + records.size());
    }
}
