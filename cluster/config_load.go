package cluster

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"

	"gopkg.in/yaml.v3"
)

// EnvName is the environment variable that overrides the field at path:
// "redis.tls.enabled" → "WSACTOR_REDIS_TLS_ENABLED".
func EnvName(path string) string {
	return "WSACTOR_" + strings.ToUpper(strings.ReplaceAll(path, ".", "_"))
}

// FlagName is the flag (without the dash) that overrides the field at path:
// "redis.key_prefix" → "redis-key-prefix".
func FlagName(path string) string {
	return strings.NewReplacer(".", "-", "_", "-").Replace(path)
}

// Load reads the configuration of a node: Default, then the YAML file at path
// (skipped when path is ""), then the environment, then validation. Use
// LoadWithFlags to let flags override the environment.
func Load(path string) (Config, error) { return load(path, os.LookupEnv, nil) }

// LoadWithFlags is Load followed by the flags the user set on the command
// line, before validation: defaults < file < environment < flags.
//
//	configPath := flag.String("config", "", "cluster.yaml of this node")
//	clusterFlags := cluster.RegisterFlags(flag.CommandLine)
//	flag.Parse()
//	cfg, err := cluster.LoadWithFlags(*configPath, clusterFlags)
func LoadWithFlags(path string, f *Flags) (Config, error) { return load(path, os.LookupEnv, f) }

func load(path string, lookupEnv func(string) (string, bool), f *Flags) (Config, error) {
	c := Default()
	origins := map[string]string{}
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return Config{}, fmt.Errorf("cluster config: %w", err)
		}
		if err := c.decodeYAML(path, data, origins); err != nil {
			return Config{}, err
		}
	}
	if lookupEnv != nil {
		if err := c.applyEnv(lookupEnv, origins); err != nil {
			return Config{}, err
		}
	}
	if f != nil {
		if err := f.apply(&c, origins); err != nil {
			return Config{}, err
		}
	}
	problems := c.problems()
	for _, p := range problems {
		p.Source = origins[p.Field]
	}
	if err := joinFieldErrors(problems); err != nil {
		return Config{}, err
	}
	return c, nil
}

// decodeYAML walks the YAML tree beside the struct rather than calling
// yaml.Unmarshal, so that every error names the full path of the field and
// its line, and all of them are reported at once.
func (c *Config) decodeYAML(path string, data []byte, origins map[string]string) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
		return nil // an empty file: the defaults
	} else if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return fmt.Errorf("%s:%d: a second YAML document; the file configures one node and holds one document", path, extra.Line)
	} else if !errors.Is(err, io.EOF) {
		return fmt.Errorf("%s: %w", path, err)
	}
	if len(doc.Content) == 0 {
		return nil
	}
	d := &yamlDecoder{file: path, origins: origins}
	d.section(doc.Content[0], reflect.ValueOf(c).Elem(), "")
	if err := joinFieldErrors(d.errs); err != nil {
		return err
	}
	// Files named in the file are relative to it, as in most servers'
	// configuration; from the environment or flags, to the working directory.
	for _, l := range leavesOf(c) {
		if l.field.Tag.Get("file") == "true" && strings.HasPrefix(origins[l.path], path+":") {
			if p := l.v.String(); p != "" && !filepath.IsAbs(p) {
				l.v.SetString(filepath.Join(filepath.Dir(path), p))
			}
		}
	}
	return nil
}

type yamlDecoder struct {
	file    string
	origins map[string]string
	errs    []*FieldError
}

func (d *yamlDecoder) fail(n *yaml.Node, path string, err error) {
	d.errs = append(d.errs, &FieldError{Field: path, Source: fmt.Sprintf("%s:%d", d.file, n.Line), Err: err})
}

func (d *yamlDecoder) section(n *yaml.Node, v reflect.Value, path string) {
	n = deref(n)
	if isNull(n) {
		return // "redis:" with nothing under it keeps the defaults
	}
	where := path
	if where == "" {
		where = "the top level"
	}
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, fmt.Errorf("must be a mapping of %s", strings.Join(fieldNames(v.Type()), ", ")))
		return
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := deref(n.Content[i]), n.Content[i+1]
		name := k.Value
		p := joinPath(path, name)
		if line, dup := seen[name]; dup {
			d.fail(k, p, fmt.Errorf("set twice (first on line %d)", line))
			continue
		}
		seen[name] = k.Line
		idx := fieldIndex(v.Type(), name)
		if k.Kind != yaml.ScalarNode || idx < 0 {
			d.fail(k, p, fmt.Errorf("unknown field; %s has %s", where, strings.Join(fieldNames(v.Type()), ", ")))
			continue
		}
		if fv := v.Field(idx); fv.Kind() == reflect.Struct {
			d.section(val, fv, p)
		} else {
			d.origins[p] = fmt.Sprintf("%s:%d", d.file, k.Line)
			d.leaf(deref(val), fv, p)
		}
	}
}

func (d *yamlDecoder) leaf(n *yaml.Node, v reflect.Value, path string) {
	switch {
	case v.Kind() == reflect.Slice:
		if isNull(n) {
			v.Set(reflect.Zero(v.Type()))
			return
		}
		if n.Kind != yaml.SequenceNode {
			d.fail(n, path, errors.New(`must be a list, e.g. ["a:1", "b:2"]`))
			return
		}
		items := make([]string, 0, len(n.Content))
		for _, it := range n.Content {
			if it = deref(it); it.Kind != yaml.ScalarNode || isNull(it) {
				d.fail(it, path, errors.New("list items must be single values"))
				return
			}
			items = append(items, it.Value)
		}
		v.Set(reflect.ValueOf(items))
	case n.Kind != yaml.ScalarNode:
		d.fail(n, path, errors.New("must be a single value, not a mapping or a list"))
	case isNull(n) && v.Kind() == reflect.String:
		v.SetString("")
	case isNull(n):
		d.fail(n, path, errors.New("has no value"))
	default:
		if err := setString(v, n.Value); err != nil {
			d.fail(n, path, err)
		}
	}
}

func deref(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" }

// ApplyEnv overrides every field whose variable lookup finds (os.LookupEnv
// in production); a variable set to "" sets the field to "". Errors name the
// variable and the field.
func (c *Config) ApplyEnv(lookup func(string) (string, bool)) error {
	return c.applyEnv(lookup, map[string]string{})
}

func (c *Config) applyEnv(lookup func(string) (string, bool), origins map[string]string) error {
	var errs []*FieldError
	for _, l := range leavesOf(c) {
		name := EnvName(l.path)
		s, ok := lookup(name)
		if !ok {
			continue
		}
		if err := setString(l.v, s); err != nil {
			errs = append(errs, &FieldError{Field: l.path, Source: name, Err: err})
			continue
		}
		origins[l.path] = name
	}
	return joinFieldErrors(errs)
}

// Flags are the command-line flags of every Config field, one per field
// (-cluster-name, -node-host, -node-port, -redis-addr, …). Only the flags the
// user sets override anything.
type Flags struct {
	values []*flagValue
}

// RegisterFlags defines a flag on fs for every Config field, named by
// FlagName, and returns them for LoadWithFlags or Apply after fs.Parse.
func RegisterFlags(fs *flag.FlagSet) *Flags {
	f := &Flags{}
	def := Default()
	for _, l := range leavesOf(&def) {
		fv := &flagValue{path: l.path, typ: l.v.Type(), def: formatValue(l.v)}
		if l.field.Tag.Get("secret") == "true" || l.v.IsZero() {
			fv.def = "" // no "(default false)" in the usage, and never a secret
		}
		f.values = append(f.values, fv)
		fs.Var(fv, FlagName(l.path), l.field.Tag.Get("help")+" ("+EnvName(l.path)+")")
	}
	return f
}

// Apply overrides c's fields with the flags that were set.
func (f *Flags) Apply(c *Config) error { return f.apply(c, map[string]string{}) }

func (f *Flags) apply(c *Config, origins map[string]string) error {
	set := map[string]*flagValue{}
	for _, fv := range f.values {
		if fv.set {
			set[fv.path] = fv
		}
	}
	var errs []*FieldError
	for _, l := range leavesOf(c) {
		fv := set[l.path]
		if fv == nil {
			continue
		}
		name := "-" + FlagName(l.path)
		if err := setString(l.v, fv.raw); err != nil {
			errs = append(errs, &FieldError{Field: l.path, Source: name, Err: err})
			continue
		}
		origins[l.path] = name
	}
	return joinFieldErrors(errs)
}

type flagValue struct {
	path string
	typ  reflect.Type
	def  string
	raw  string
	set  bool
}

func (f *flagValue) String() string {
	if f == nil {
		return ""
	}
	if f.set {
		return f.raw
	}
	return f.def
}

// Set checks the syntax at once, so that the flag package reports a bad
// value with the flag's name and usage.
func (f *flagValue) Set(s string) error {
	if err := setString(reflect.New(f.typ).Elem(), s); err != nil {
		return fmt.Errorf("%s: %w", f.path, err)
	}
	f.raw, f.set = s, true
	return nil
}

func (f *flagValue) IsBoolFlag() bool { return f != nil && f.typ.Kind() == reflect.Bool }
