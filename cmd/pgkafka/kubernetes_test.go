package main

import (
	"net"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// kubernetesDir holds the Kubernetes manifests, one object a file.
var kubernetesDir = filepath.Join("..", "..", "deployments", "kubernetes")

// manifests are deployments/kubernetes/'s objects, decoded strictly into
// the Kubernetes and prometheus-operator API types.
type manifests struct {
	deployment     appsv1.Deployment
	configMap      corev1.ConfigMap
	secret         corev1.Secret
	service        corev1.Service
	serviceMonitor monitoringv1.ServiceMonitor
	prometheusRule monitoringv1.PrometheusRule
}

// loadManifests decodes every file of deployments/kubernetes/ strictly (an
// unknown or misspelt field, a duplicate key or a wrong type fails) and
// fails on a file it does not know, so none goes unchecked.
func loadManifests(t *testing.T) *manifests {
	t.Helper()
	var m manifests
	type manifestFile struct {
		name       string
		obj        any // decoded into
		apiVersion string
		kind       string
		meta       func() (metav1.TypeMeta, metav1.ObjectMeta)
	}
	files := []manifestFile{
		{"deployment.yaml", &m.deployment, "apps/v1", "Deployment",
			func() (metav1.TypeMeta, metav1.ObjectMeta) { return m.deployment.TypeMeta, m.deployment.ObjectMeta }},
		{"configmap.yaml", &m.configMap, "v1", "ConfigMap",
			func() (metav1.TypeMeta, metav1.ObjectMeta) { return m.configMap.TypeMeta, m.configMap.ObjectMeta }},
		{"secret.yaml", &m.secret, "v1", "Secret",
			func() (metav1.TypeMeta, metav1.ObjectMeta) { return m.secret.TypeMeta, m.secret.ObjectMeta }},
		{"service.yaml", &m.service, "v1", "Service",
			func() (metav1.TypeMeta, metav1.ObjectMeta) { return m.service.TypeMeta, m.service.ObjectMeta }},
		{"servicemonitor.yaml", &m.serviceMonitor, "monitoring.coreos.com/v1", "ServiceMonitor",
			func() (metav1.TypeMeta, metav1.ObjectMeta) {
				return m.serviceMonitor.TypeMeta, m.serviceMonitor.ObjectMeta
			}},
		{"prometheusrule.yaml", &m.prometheusRule, "monitoring.coreos.com/v1", "PrometheusRule",
			func() (metav1.TypeMeta, metav1.ObjectMeta) {
				return m.prometheusRule.TypeMeta, m.prometheusRule.ObjectMeta
			}},
	}
	entries, err := os.ReadDir(kubernetesDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !slices.ContainsFunc(files, func(f manifestFile) bool { return f.name == e.Name() }) {
			t.Errorf("deployments/kubernetes/%s: a file this test does not check; add it to loadManifests", e.Name())
		}
	}
	for _, f := range files {
		data, err := os.ReadFile(filepath.Join(kubernetesDir, f.name))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(data), "\n---") {
			t.Errorf("%s: one object a file, please", f.name)
		}
		if err := yaml.UnmarshalStrict(data, f.obj); err != nil {
			t.Fatalf("%s: %v", f.name, err)
		}
		tm, om := f.meta()
		if tm.APIVersion != f.apiVersion || tm.Kind != f.kind {
			t.Errorf("%s: %s %s, want %s %s", f.name, tm.APIVersion, tm.Kind, f.apiVersion, f.kind)
		}
		if om.Name == "" {
			t.Errorf("%s: no metadata.name", f.name)
		}
		if om.Namespace != "" {
			t.Errorf("%s: metadata.namespace %q: leave it to kubectl -n", f.name, om.Namespace)
		}
	}
	return &m
}

// container is the Deployment's pgkafka container.
func (m *manifests) container(t *testing.T) *corev1.Container {
	t.Helper()
	cs := m.deployment.Spec.Template.Spec.Containers
	if len(cs) != 1 {
		t.Fatalf("deployment.yaml: %d containers, want the one pgkafka", len(cs))
	}
	return &cs[0]
}

// configPath is the file the container's `run -c FILE` reads.
func (m *manifests) configPath(t *testing.T) string {
	t.Helper()
	c := m.container(t)
	args := append(slices.Clone(c.Command), c.Args...)
	if len(args) == 0 || args[0] != "run" {
		t.Fatalf("deployment.yaml: container args %q, want `run -c FILE ...`", args)
	}
	i := slices.Index(args, "-c")
	if i < 0 || i+1 >= len(args) {
		t.Fatalf("deployment.yaml: container args %q lack -c FILE", args)
	}
	return args[i+1]
}

// environ is the container's environment as pgkafka sees it: plain values,
// and the Secret's values for secretKeyRefs.
func (m *manifests) environ(t *testing.T) []string {
	t.Helper()
	var env []string
	for _, e := range m.container(t).Env {
		switch {
		case e.ValueFrom == nil:
			env = append(env, e.Name+"="+e.Value)
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			if ref.Name != m.secret.Name {
				t.Errorf("deployment.yaml: env %s refers to Secret %q, not secret.yaml's %q", e.Name, ref.Name, m.secret.Name)
				continue
			}
			v, ok := m.secret.StringData[ref.Key]
			if !ok {
				b, ok2 := m.secret.Data[ref.Key]
				v, ok = string(b), ok2
			}
			if !ok {
				t.Errorf("deployment.yaml: env %s refers to key %q, which secret.yaml lacks", e.Name, ref.Key)
				continue
			}
			env = append(env, e.Name+"="+v)
		default:
			t.Errorf("deployment.yaml: env %s: only values and secretKeyRefs are checked here", e.Name)
		}
	}
	return env
}

// TestKubernetesConfigValidates loads the configuration the ConfigMap
// mounts where the container reads it, through pgkafka's own loader, with
// the environment the Deployment gives it (the Secret's passwords): it
// passes validation; without the Secret's variables it does not (the
// passwords are not in the ConfigMap).
func TestKubernetesConfigValidates(t *testing.T) {
	m := loadManifests(t)
	file := m.configPath(t)
	dir, key := path.Split(file)
	var mounted bool
	for _, vm := range m.container(t).VolumeMounts {
		if path.Clean(vm.MountPath) != path.Clean(dir) {
			continue
		}
		for _, v := range m.deployment.Spec.Template.Spec.Volumes {
			if v.Name == vm.Name && v.ConfigMap != nil && v.ConfigMap.Name == m.configMap.Name && len(v.ConfigMap.Items) == 0 {
				mounted = true
			}
		}
	}
	if !mounted {
		t.Fatalf("deployment.yaml: no volume mounts ConfigMap %q at %s, where `run -c %s` reads", m.configMap.Name, dir, file)
	}
	text, ok := m.configMap.Data[key]
	if !ok {
		t.Fatalf("configmap.yaml: no key %q (the file `run -c %s` reads)", key, file)
	}
	local := filepath.Join(t.TempDir(), key)
	if err := os.WriteFile(local, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}

	environ := m.environ(t)
	cfg, err := loadConfig(local, environ, nil)
	if err != nil {
		t.Fatalf("the ConfigMap's configuration with the Deployment's environment does not load:\n%v", err)
	}
	if got, want := string(cfg.Source.Password), m.secret.StringData["source-password"]; got != want {
		t.Errorf("source.password = %q, want the Secret's source-password %q", got, want)
	}
	for _, v := range m.secret.StringData {
		if strings.Contains(text, v) {
			t.Errorf("configmap.yaml holds the Secret's value %q: passwords belong in the Secret", v)
		}
	}
	if _, err := loadConfig(local, nil, nil); err == nil || !strings.Contains(err.Error(), "source.password: required") {
		t.Errorf("without the Secret's variables the configuration should lack source.password; got %v", err)
	}

	// The metrics address is the container's metrics port.
	_, port, err := net.SplitHostPort(cfg.Metrics.Address)
	if err != nil {
		t.Fatalf("metrics.address %q: %v (the probes and the ServiceMonitor need it)", cfg.Metrics.Address, err)
	}
	p := m.metricsPort(t)
	if strconv.Itoa(int(p.ContainerPort)) != port {
		t.Errorf("metrics.address %q, but the container's port %q is %d", cfg.Metrics.Address, p.Name, p.ContainerPort)
	}

	// A SIGTERM gets to finish: the grace period outlasts shutdownTimeout.
	grace := m.deployment.Spec.Template.Spec.TerminationGracePeriodSeconds
	if grace == nil || time.Duration(*grace)*time.Second <= cfg.ShutdownTimeout {
		t.Errorf("terminationGracePeriodSeconds %v must exceed shutdownTimeout %s", grace, cfg.ShutdownTimeout)
	}
}

// metricsPort is the container port named metrics.
func (m *manifests) metricsPort(t *testing.T) corev1.ContainerPort {
	t.Helper()
	for _, p := range m.container(t).Ports {
		if p.Name == "metrics" {
			return p
		}
	}
	t.Fatal("deployment.yaml: the container has no port named metrics")
	return corev1.ContainerPort{}
}

// resolvePort is the container port number that port (a name or a number)
// designates.
func (m *manifests) resolvePort(t *testing.T, port intstr.IntOrString) int32 {
	t.Helper()
	if port.Type == intstr.Int {
		return port.IntVal
	}
	for _, p := range m.container(t).Ports {
		if p.Name == port.StrVal {
			return p.ContainerPort
		}
	}
	t.Errorf("port %q names no container port", port.StrVal)
	return -1
}

// TestKubernetesManifests checks that the objects fit together: the
// Deployment's replicas, probes and selector; the Service selecting its
// pods on the metrics port; the ServiceMonitor selecting the Service; the
// PrometheusRule holding deployments/prometheus/alerts.yaml's rules.
func TestKubernetesManifests(t *testing.T) {
	m := loadManifests(t)
	d := &m.deployment
	podLabels := labels.Set(d.Spec.Template.Labels)

	t.Run("deployment", func(t *testing.T) {
		if d.Spec.Replicas == nil || *d.Spec.Replicas < 2 {
			t.Errorf("replicas %v: want 2 (an active instance and a standby)", d.Spec.Replicas)
		}
		sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
		if err != nil || sel.Empty() || !sel.Matches(podLabels) {
			t.Errorf("selector %v (%v) does not select the pod template's labels %v", d.Spec.Selector, err, podLabels)
		}
		c := m.container(t)
		metrics := m.metricsPort(t).ContainerPort
		for name, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
			if p == nil || p.HTTPGet == nil {
				t.Errorf("%s probe: want an HTTP GET of /healthz", name)
				continue
			}
			if p.HTTPGet.Path != "/healthz" || m.resolvePort(t, p.HTTPGet.Port) != metrics {
				t.Errorf("%s probe: GET %s on port %s, want /healthz on the metrics port %d", name, p.HTTPGet.Path, p.HTTPGet.Port.String(), metrics)
			}
		}
		if c.Image == "" {
			t.Error("no image")
		}
		// Go's soft memory limit under the container's limit.
		limit, ok := c.Resources.Limits[corev1.ResourceMemory]
		if !ok {
			t.Error("no memory limit")
		}
		for _, e := range c.Env {
			if e.Name != "GOMEMLIMIT" {
				continue
			}
			q, err := resource.ParseQuantity(strings.TrimSuffix(e.Value, "B"))
			if err != nil || q.Cmp(limit) >= 0 {
				t.Errorf("GOMEMLIMIT %q (%v) must be under the memory limit %s", e.Value, err, limit.String())
			}
		}
	})

	t.Run("service", func(t *testing.T) {
		s := &m.service
		if len(s.Spec.Selector) == 0 || !labels.SelectorFromSet(s.Spec.Selector).Matches(podLabels) {
			t.Errorf("selector %v does not select the Deployment's pods %v", s.Spec.Selector, podLabels)
		}
		var found bool
		for _, p := range s.Spec.Ports {
			if p.Name == "metrics" {
				found = true
				if m.resolvePort(t, p.TargetPort) != m.metricsPort(t).ContainerPort {
					t.Errorf("port metrics targets %s, not the container's metrics port", p.TargetPort.String())
				}
			}
		}
		if !found {
			t.Error("no port named metrics")
		}
	})

	t.Run("servicemonitor", func(t *testing.T) {
		sm := &m.serviceMonitor
		sel, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
		if err != nil || sel.Empty() || !sel.Matches(labels.Set(m.service.Labels)) {
			t.Errorf("selector %v (%v) does not select the Service's labels %v", sm.Spec.Selector, err, m.service.Labels)
		}
		if !reflect.ValueOf(sm.Spec.NamespaceSelector).IsZero() {
			t.Errorf("namespaceSelector %+v: the Service is in the ServiceMonitor's namespace", sm.Spec.NamespaceSelector)
		}
		if len(sm.Spec.Endpoints) != 1 {
			t.Fatalf("%d endpoints, want the metrics port", len(sm.Spec.Endpoints))
		}
		ep := sm.Spec.Endpoints[0]
		if !slices.ContainsFunc(m.service.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == ep.Port }) {
			t.Errorf("endpoint port %q is no port of the Service", ep.Port)
		}
		if ep.Path != "" && ep.Path != "/metrics" {
			t.Errorf("endpoint path %q, want /metrics", ep.Path)
		}
	})

	t.Run("prometheusrule", func(t *testing.T) {
		data, err := os.ReadFile(alertsFile)
		if err != nil {
			t.Fatal(err)
		}
		var want monitoringv1.PrometheusRuleSpec
		if err := yaml.UnmarshalStrict(data, &want); err != nil {
			t.Fatalf("deployments/prometheus/alerts.yaml as a PrometheusRule's spec: %v", err)
		}
		if len(want.Groups) == 0 {
			t.Fatal("deployments/prometheus/alerts.yaml: no group")
		}
		if !reflect.DeepEqual(m.prometheusRule.Spec, want) {
			t.Errorf("prometheusrule.yaml's spec differs from deployments/prometheus/alerts.yaml (the source): copy its groups under spec:\ngot  %+v\nwant %+v",
				m.prometheusRule.Spec, want)
		}
	})
}

// TestKubernetesTypesOnlyInTests: the Kubernetes and prometheus-operator
// API types this file decodes into stay out of the pgkafka binary.
func TestKubernetesTypesOnlyInTests(t *testing.T) {
	for _, p := range listPackages(t) {
		if p.path != thisModule+"/cmd/pgkafka" {
			continue
		}
		for _, dep := range p.deps {
			for _, banned := range []string{"k8s.io", "sigs.k8s.io", "github.com/prometheus-operator", "github.com/prometheus/prometheus"} {
				if pathUnder(dep, banned) || strings.HasPrefix(dep, banned+"/") {
					t.Errorf("the pgkafka binary depends on %s: test dependencies only", dep)
				}
			}
		}
		return
	}
	t.Fatal("go list did not list cmd/pgkafka")
}
