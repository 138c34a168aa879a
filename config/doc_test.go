package config

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// keyTable renders the key table of doc.go for one struct, as the lines of
// an indented block in a doc comment.
func keyTable[T any](defaults func(string) (T, error)) []string {
	lines := []string{
		"//\t| key | env | flag | local | lan | wan |",
		"//\t|---|---|---|---|---|---|",
	}
	for _, k := range keysOf(defaults) {
		lines = append(lines, fmt.Sprintf("//\t| %s | %s | -%s | %s | %s | %s |",
			k.key, k.env, k.flag, k.defaults[0], k.defaults[1], k.defaults[2]))
	}
	return lines
}

// TestDocTable keeps the key tables of doc.go, which README.md copies, in
// step with the structs and their defaults. Run with -v to print them.
func TestDocTable(t *testing.T) {
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, table := range [][]string{keyTable(DefaultNaming), keyTable(DefaultAgent)} {
		text := strings.Join(table, "\n")
		t.Log("\n" + text)
		if !strings.Contains(string(doc), text) {
			t.Errorf("doc.go lacks this table or has an old one:\n%s", text)
		}
	}
}
