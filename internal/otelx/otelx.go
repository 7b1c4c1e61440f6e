// Package otelx is the one OpenTelemetry recorder of turnkeep: package
// memory and package dataflow each make a Recorder of their operations, and
// this package decides which provider records anything.
package otelx

import (
	"reflect"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// TracerProvider returns tp, or the global provider for nil, unless it
// records nothing: a no-op, or otel's default global provider, which
// nothing has replaced yet. Then it returns nil, and the caller records
// nothing at all (the default global's spans allocate even so, which a
// cache hit must not).
func TracerProvider(tp trace.TracerProvider) trace.TracerProvider {
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	if _, ok := tp.(tracenoop.TracerProvider); ok || isOtelDefault(tp) {
		return nil
	}
	return tp
}

// MeterProvider is TracerProvider for meters.
func MeterProvider(mp metric.MeterProvider) metric.MeterProvider {
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	if _, ok := mp.(metricnoop.MeterProvider); ok || isOtelDefault(mp) {
		return nil
	}
	return mp
}

// isOtelDefault reports whether p is one of otel's default global
// providers (go.opentelemetry.io/otel/internal/global), which record
// nothing until the application sets its own.
func isOtelDefault(p any) bool {
	t := reflect.TypeOf(p)
	return t != nil && t.Kind() == reflect.Pointer && t.Elem().PkgPath() == "go.opentelemetry.io/otel/internal/global"
}
