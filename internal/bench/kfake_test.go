package main

import (
	"context"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// The kfakeserver the --sinks bench starts: it takes records on the port
// it names, and its /stats and measureKafka count them.
func TestKfakeServerCountsWhatItHolds(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "kfakeserver")
	if out, err := exec.Command("go", "build", "-o", bin, "./kfakeserver").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	k, err := startKfake(bin, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer k.stop()
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.addr), kgo.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var recs []*kgo.Record
	for i := range 10 {
		recs = append(recs, &kgo.Record{Topic: "t.public.x", Key: []byte{byte('a' + i)}, Value: []byte("0123456789"),
			Headers: []kgo.RecordHeader{{Key: "id", Value: []byte("12")}}})
	}
	recs = append(recs, &kgo.Record{Topic: "other", Value: []byte("v")})
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	ts, err := k.topics()
	if err != nil {
		t.Fatal(err)
	}
	if s := ts["t.public.x"]; s.Partitions != 2 || s.Records != 10 || s.StoredBytes == 0 {
		t.Fatalf("stats of t.public.x: %+v", s)
	}
	got, err := measureKafka(context.Background(), k, "t")
	if err != nil {
		t.Fatal(err)
	}
	// Key 1 + value 10 + header "id" 2 + "12" 2, ten times; "other" is not
	// of the prefix.
	if got.Records != 10 || got.ValueBytes != 100 || got.RecordBytes != 150 || got.StoredBytes != ts["t.public.x"].StoredBytes {
		t.Fatalf("measureKafka = %+v", got)
	}
}
