package main

import (
	"encoding/binary"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// kcat, a client Spine shares nothing with, sees the embedded broker's
// topics, and a RuntimeEvent it reads starts with the Confluent header whose
// schema id the registry resolves. .ci/run installs kcat (Debian package).
func TestKcatReadsTheThread(t *testing.T) {
	t.Parallel()
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Skip("kcat is not installed (apt-get install kcat); .ci/run installs it")
	}
	run, cfg, registryURL := fullStackCfg(t)
	if code, _, stderr := run("", "produce", "--input", "hello kcat", "--trace-id", "trace-kcat"); code != exitOK {
		t.Fatalf("produce: %s", stderr)
	}
	brokers := strings.Join(cfg.Brokers, ",")
	out, err := exec.CommandContext(t.Context(), kcat, "-b", brokers, "-L").CombinedOutput()
	if err != nil {
		t.Fatalf("kcat -L: %v\n%s", err, out)
	}
	control := cfg.TopicPrefix + "spine.control"
	for _, topic := range []string{control, cfg.TopicPrefix + "spine.intents", cfg.TopicPrefix + "gate.verdict", cfg.TopicPrefix + "_schemas"} {
		if !strings.Contains(string(out), `topic "`+topic+`"`) {
			t.Errorf("kcat -L does not list %s:\n%s", topic, out)
		}
	}
	var value []byte
	deadline := time.Now().Add(30 * time.Second)
	for len(value) < 5 && time.Now().Before(deadline) {
		value, err = exec.CommandContext(t.Context(), kcat, "-b", brokers, "-C", "-t", control, "-c", "1", "-e", "-q", "-f", "%s").Output()
		if err != nil {
			t.Fatalf("kcat -C: %v", err)
		}
		if len(value) < 5 {
			time.Sleep(200 * time.Millisecond)
		}
	}
	if len(value) < 5 || value[0] != 0 {
		t.Fatalf("record does not start with magic byte 0: % x", value[:min(len(value), 8)])
	}
	id := binary.BigEndian.Uint32(value[1:5])
	resp, err := http.Get(registryURL + "/schemas/ids/" + strconv.Itoa(int(id)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("registry answers %d for schema id %d read by kcat", resp.StatusCode, id)
	}
}
