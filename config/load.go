package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
)

// EnvPrefix starts every environment variable this package reads:
// MASTERSHIP_ followed by the json key in upper case.
const EnvPrefix = "MASTERSHIP_"

// Environment variables that choose the layers rather than set a field.
const (
	// EnvProfile names the profile when Sources.Profile is empty.
	EnvProfile = EnvPrefix + "PROFILE"
	// EnvConfig names the config file when Sources.File is empty.
	EnvConfig = EnvPrefix + "CONFIG"
)

// MaxFileBytes caps a config file. A config is a few hundred bytes; the cap
// turns a wrong path (a log, a database) into a clear error instead of a
// large read.
const MaxFileBytes = 1 << 20

// Sources are the layers a config is built from, in one precedence, each
// overriding the ones before it:
//
//	profile defaults < config file < environment < flags
//
// Then the result is validated.
type Sources struct {
	// Profile names the defaults: "local", "lan" or "wan". Empty means the
	// MASTERSHIP_PROFILE entry of Env, and "lan" without one.
	Profile string

	// File is the path of a JSON config file whose keys are the json tags
	// of the struct. Empty means the MASTERSHIP_CONFIG entry of Env, and no
	// file without one.
	File string

	// Env holds "KEY=VALUE" entries as os.Environ returns them. It is a
	// parameter, not read from the process, so that tests are hermetic.
	// Only MASTERSHIP_<KEY> entries are read; MASTERSHIP_ variables naming
	// no field are ignored, because naming nodes, agents and the global
	// flags of the binary share the prefix. Empty values are ignored too, as
	// shells and compose files leave empty variables behind.
	Env []string

	// Flags maps flag names without the dash ("session-ttl") to the values
	// the user set on the command line; flags left unset must be absent.
	Flags map[string]string
}

// LoadNaming builds a naming node config from s and validates it.
func LoadNaming(s Sources) (Naming, error) {
	n, err := load(s, DefaultNaming)
	if err != nil {
		return Naming{}, err
	}
	return n, n.Validate()
}

// LoadAgent builds an agent config from s and validates it.
func LoadAgent(s Sources) (Agent, error) {
	a, err := load(s, DefaultAgent)
	if err != nil {
		return Agent{}, err
	}
	return a, a.Validate()
}

// load applies the layers of s over the profile defaults, without
// validating. Errors of every layer are joined, so one run shows them all.
func load[T any](s Sources, defaults func(string) (T, error)) (T, error) {
	var zero T
	profile, profileSrc := s.Profile, "flag -profile"
	if profile == "" {
		profile, profileSrc = lookupEnv(s.Env, EnvProfile), "env "+EnvProfile
	}
	cfg, err := defaults(profile)
	if err != nil {
		return zero, fmt.Errorf("%s: %w", profileSrc, err)
	}
	var errs []error
	path := s.File
	if path == "" {
		path = lookupEnv(s.Env, EnvConfig)
	}
	if path != "" {
		data, err := readFile(path)
		if err != nil {
			errs = append(errs, err)
		} else {
			errs = append(errs, decodeFile(&cfg, path, data))
		}
	}
	errs = append(errs, applyEnv(&cfg, s.Env), applyFlags(&cfg, s.Flags))
	if err := errors.Join(errs...); err != nil {
		return zero, err
	}
	return cfg, nil
}

// lookupEnv returns the last value of key in env, as the shell would see
// the last assignment.
func lookupEnv(env []string, key string) string {
	v := ""
	for _, e := range env {
		if k, val, ok := strings.Cut(e, "="); ok && k == key {
			v = val
		}
	}
	return v
}

func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: read file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("config: read file %s: %w", path, err)
	}
	if len(data) > MaxFileBytes {
		return nil, fmt.Errorf("%w: file %s: larger than %d bytes", ErrBadValue, path, MaxFileBytes)
	}
	return data, nil
}

// field is one configurable struct field, found by its json tag.
type field struct {
	key   string // json tag: "session_ttl"
	flag  string // flag name: "session-ttl"
	env   string // environment variable: "MASTERSHIP_SESSION_TTL"
	index int
	typ   reflect.Type
}

var durationType = reflect.TypeFor[time.Duration]()

// fieldsOf lists the fields of struct type t that carry a json tag, in
// declaration order. Fields tagged "-" (the Logger) are not configuration.
func fieldsOf(t reflect.Type) []field {
	var fs []field
	for i := range t.NumField() {
		sf := t.Field(i)
		key, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
		if key == "" || key == "-" || !sf.IsExported() {
			continue
		}
		fs = append(fs, field{
			key:   key,
			flag:  strings.ReplaceAll(key, "_", "-"),
			env:   EnvPrefix + strings.ToUpper(key),
			index: i,
			typ:   sf.Type,
		})
	}
	return fs
}

// decodeFile applies a JSON object to *dst (a pointer to a config struct).
// It decodes into raw messages rather than into the struct with
// DisallowUnknownFields, because durations are written as strings ("2s")
// and because its errors then name the file and key exactly; keys are
// matched exactly, not case-insensitively as encoding/json would.
func decodeFile(dst any, name string, data []byte) error {
	v := reflect.ValueOf(dst).Elem()
	dec := json.NewDecoder(bytes.NewReader(data))
	var raw map[string]json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return fmt.Errorf("%w: file %s: want one JSON object: %v", ErrBadValue, name, err)
	}
	if raw == nil {
		return fmt.Errorf("%w: file %s: want one JSON object, got null", ErrBadValue, name)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("%w: file %s: data after the JSON object", ErrBadValue, name)
	}
	fs := fieldsOf(v.Type())
	var errs []error
	for _, key := range slices.Sorted(maps.Keys(raw)) {
		i := slices.IndexFunc(fs, func(f field) bool { return f.key == key })
		if i < 0 {
			errs = append(errs, unknownKey("file "+name+": key", key, fs))
			continue
		}
		if err := setJSON(v.Field(fs[i].index), raw[key]); err != nil {
			errs = append(errs, fmt.Errorf("%w: file %s: key %q: %v", ErrBadValue, name, key, err))
		}
	}
	return errors.Join(errs...)
}

// unknownKey names the key and, for a flag-style spelling, the file key
// meant, because "session-ttl" in a file is the likeliest mistake.
func unknownKey(where, key string, fs []field) error {
	hint := ""
	for _, f := range fs {
		if strings.EqualFold(strings.ReplaceAll(key, "-", "_"), f.key) {
			hint = fmt.Sprintf(" (did you mean %q?)", f.key)
		}
	}
	return fmt.Errorf("%w: %s %q%s", ErrUnknownKey, where, key, hint)
}

// setJSON decodes one JSON value into fv, leaving fv unchanged on error.
func setJSON(fv reflect.Value, raw json.RawMessage) error {
	if string(bytes.TrimSpace(raw)) == "null" {
		return errors.New("null is not a value; leave the key out for the default")
	}
	if fv.Type() == durationType {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			// A bare number would be nanoseconds: 10 meaning 10ns is a trap.
			return fmt.Errorf("want a duration string such as \"2s\", got %s", raw)
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		fv.SetInt(int64(d))
		return nil
	}
	p := reflect.New(fv.Type())
	if err := json.Unmarshal(raw, p.Interface()); err != nil {
		return err
	}
	fv.Set(p.Elem())
	return nil
}

// setString parses s, as written in an environment variable or flag, into
// fv, leaving fv unchanged on error.
func setString(fv reflect.Value, s string) error {
	t := fv.Type()
	if t == durationType {
		d, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		fv.SetInt(int64(d))
		return nil
	}
	switch t.Kind() {
	case reflect.String:
		fv.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return errors.New("want true or false")
		}
		fv.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		i, err := strconv.ParseInt(s, 10, t.Bits())
		if err != nil {
			return fmt.Errorf("want an integer: %w", errors.Unwrap(err))
		}
		fv.SetInt(i)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		u, err := strconv.ParseUint(s, 10, t.Bits())
		if err != nil {
			return fmt.Errorf("want an unsigned integer: %w", errors.Unwrap(err))
		}
		fv.SetUint(u)
	case reflect.Slice:
		if t.Elem().Kind() != reflect.String {
			panic(fmt.Sprintf("config: field of type %s has no string form", t))
		}
		var list []string
		for _, e := range strings.Split(s, ",") {
			if e = strings.TrimSpace(e); e != "" {
				list = append(list, e)
			}
		}
		fv.Set(reflect.ValueOf(list).Convert(t))
	default:
		// A field type added without teaching the loader: a programming
		// error that TestEveryFieldLoads catches.
		panic(fmt.Sprintf("config: field of type %s has no string form", t))
	}
	return nil
}

// applyEnv applies the MASTERSHIP_<KEY> entries of env to *dst.
func applyEnv(dst any, env []string) error {
	v := reflect.ValueOf(dst).Elem()
	fs := fieldsOf(v.Type())
	var errs []error
	for _, e := range env {
		k, val, ok := strings.Cut(e, "=")
		if !ok || val == "" || !strings.HasPrefix(k, EnvPrefix) {
			continue
		}
		i := slices.IndexFunc(fs, func(f field) bool { return f.env == k })
		if i < 0 {
			continue
		}
		if err := setString(v.Field(fs[i].index), val); err != nil {
			errs = append(errs, fmt.Errorf("%w: env %s=%q: %v", ErrBadValue, k, val, err))
		}
	}
	return errors.Join(errs...)
}

// applyFlags applies flag values, keyed by flag name, to *dst.
func applyFlags(dst any, flags map[string]string) error {
	v := reflect.ValueOf(dst).Elem()
	fs := fieldsOf(v.Type())
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(flags)) {
		val := flags[name]
		i := slices.IndexFunc(fs, func(f field) bool { return f.flag == name })
		if i < 0 {
			errs = append(errs, fmt.Errorf("%w: flag -%s", ErrUnknownKey, name))
			continue
		}
		if err := setString(v.Field(fs[i].index), val); err != nil {
			errs = append(errs, fmt.Errorf("%w: flag -%s %q: %v", ErrBadValue, name, val, err))
		}
	}
	return errors.Join(errs...)
}
