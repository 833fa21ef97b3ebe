// Command kfakeserver runs franz-go's kfake as a process of its own on a
// loopback port, for scripts/bench.sh --sinks only. kfake is an in-memory
// implementation of the Kafka protocol written for tests, not Apache Kafka:
// one broker, no replication, no disk, no page cache. The bench measures
// cdcaudit's Kafka sink against it (its encoding, compression, produce
// round trips and acknowledgements), not what a Kafka cluster costs.
//
// It prints two lines on stdout once listening:
//
//	kafka 127.0.0.1:PORT
//	stats 127.0.0.1:PORT
//
// and serves GET /stats on the second address: every topic's partitions,
// records and stored bytes (the record batches as the producer sent them,
// compressed, batch headers included), as JSON. SIGTERM or SIGINT stops it.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TopicStats is what /stats says of one topic.
type TopicStats struct {
	Partitions  int   `json:"partitions"`
	Records     int64 `json:"records"`      // high watermarks summed
	StoredBytes int64 `json:"stored_bytes"` // record batches held, as produced
}

func main() {
	port := flag.Int("port", 0, "the broker's port on 127.0.0.1 (0: a free one)")
	partitions := flag.Int("partitions", 1, "partitions of each topic the producer creates")
	statsAddr := flag.String("stats-addr", "127.0.0.1:0", "address of the /stats endpoint")
	flag.Parse()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(*port),
		kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(*partitions))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	l, err := net.Listen("tcp", *statsAddr)
	if err != nil {
		log.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		log.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		topics, err := adm.ListTopics(ctx)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		out := map[string]TopicStats{}
		for _, name := range topics.Names() {
			var s TopicStats
			for _, p := range c.PartitionInfos(name) {
				s.Partitions++
				s.Records += p.HighWatermark
				s.StoredBytes += p.NumBytes
			}
			out[name] = s
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(out)
	})
	go http.Serve(l, mux)
	fmt.Printf("kafka %s\nstats %s\n", c.ListenAddrs()[0], l.Addr())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
}
