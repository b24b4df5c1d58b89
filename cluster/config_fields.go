package cluster

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// These helpers walk Config by reflection, so that a new field is read from
// YAML, the environment and flags with no other change.

type leaf struct {
	path  string
	field reflect.StructField
	v     reflect.Value // settable
}

func leavesOf(c *Config) []leaf { return appendLeaves(nil, reflect.ValueOf(c).Elem(), "") }

func appendLeaves(out []leaf, v reflect.Value, prefix string) []leaf {
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		path := joinPath(prefix, yamlName(f))
		if f.Type.Kind() == reflect.Struct {
			out = appendLeaves(out, v.Field(i), path)
		} else {
			out = append(out, leaf{path: path, field: f, v: v.Field(i)})
		}
	}
	return out
}

func yamlName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	return name
}

func fieldIndex(t reflect.Type, name string) int {
	for i := range t.NumField() {
		if yamlName(t.Field(i)) == name {
			return i
		}
	}
	return -1
}

func fieldNames(t reflect.Type) []string {
	names := make([]string, t.NumField())
	for i := range names {
		names[i] = yamlName(t.Field(i))
	}
	return names
}

func joinPath(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

var durationType = reflect.TypeFor[time.Duration]()

// setString parses s (from YAML, the environment or a flag) into v.
func setString(v reflect.Value, s string) error {
	t := strings.TrimSpace(s)
	switch {
	case v.Type() == durationType:
		d, err := time.ParseDuration(t)
		if err != nil {
			return fmt.Errorf("%q is not a duration (a number with a unit: 500ms, 2s, 1m)", s)
		}
		v.SetInt(int64(d))
	case v.Kind() == reflect.String:
		v.SetString(s)
	case v.Kind() == reflect.Int:
		n, err := strconv.Atoi(t)
		if err != nil {
			return fmt.Errorf("%q is not an integer", s)
		}
		v.SetInt(int64(n))
	case v.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(t)
		if err != nil {
			return fmt.Errorf("%q is not a boolean (true or false)", s)
		}
		v.SetBool(b)
	case v.Type() == reflect.TypeFor[[]string]():
		var items []string
		for item := range strings.SplitSeq(s, ",") {
			if item = strings.TrimSpace(item); item != "" {
				items = append(items, item)
			}
		}
		v.Set(reflect.ValueOf(items))
	default:
		panic("cluster: unsupported Config field type " + v.Type().String())
	}
	return nil
}

func formatValue(v reflect.Value) string {
	switch {
	case v.Type() == durationType:
		return time.Duration(v.Int()).String()
	case v.Kind() == reflect.Slice:
		return strings.Join(v.Interface().([]string), ",")
	default:
		return fmt.Sprint(v.Interface())
	}
}
