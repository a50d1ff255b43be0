package deploy_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/inkan-relay/inkan/config"
	"github.com/inkan-relay/inkan/queue/safefile"
)

// The subset of the Kubernetes API the manifests use, decoded strictly so
// that a misspelt field fails here instead of being ignored by a cluster
// (which drops unknown fields with at most a warning). Add fields as the
// manifests need them.

type meta struct {
	Name        string
	Labels      map[string]string
	Annotations map[string]string
}

type k8sObject struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string
	Metadata   meta
	Type       string
	Data       map[string]string
	StringData map[string]string `yaml:"stringData"`
	Spec       *k8sSpec
}

// k8sSpec is the union of the spec fields of Service, Deployment,
// StatefulSet and PodDisruptionBudget.
type k8sSpec struct {
	Type                  string
	ExternalTrafficPolicy string `yaml:"externalTrafficPolicy"`
	ClusterIP             string `yaml:"clusterIP"`
	Ports                 []struct {
		Name       string
		Port       int
		TargetPort intOrString `yaml:"targetPort"`
		Protocol   string
	}
	Selector            labelSelector
	Replicas            *int
	ServiceName         string `yaml:"serviceName"`
	PodManagementPolicy string `yaml:"podManagementPolicy"`
	Template            *struct {
		Metadata meta
		Spec     podSpec
	}
	VolumeClaimTemplates []struct {
		Metadata meta
		Spec     struct {
			AccessModes      []string `yaml:"accessModes"`
			StorageClassName string   `yaml:"storageClassName"`
			Resources        resources
		}
	} `yaml:"volumeClaimTemplates"`
	MinAvailable   *intOrString `yaml:"minAvailable"`
	MaxUnavailable *intOrString `yaml:"maxUnavailable"`
}

type intOrString string

func (s *intOrString) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: want a number or a name", n.Line)
	}
	*s = intOrString(n.Value)
	return nil
}

// labelSelector accepts a Service's plain map and the {matchLabels: ...} of
// workloads.
type labelSelector map[string]string

func (l *labelSelector) UnmarshalYAML(n *yaml.Node) error {
	var m struct {
		MatchLabels map[string]string `yaml:"matchLabels"`
	}
	if len(n.Content) > 0 && n.Content[0].Value == "matchLabels" {
		if err := n.Decode(&m); err != nil {
			return err
		}
		*l = m.MatchLabels
		return nil
	}
	return n.Decode((*map[string]string)(l))
}

type resources struct{ Requests, Limits map[string]string }

type securityContext struct {
	RunAsNonRoot             *bool                  `yaml:"runAsNonRoot"`
	RunAsUser                *int64                 `yaml:"runAsUser"`
	RunAsGroup               *int64                 `yaml:"runAsGroup"`
	FSGroup                  *int64                 `yaml:"fsGroup"`
	FSGroupChangePolicy      string                 `yaml:"fsGroupChangePolicy"`
	ReadOnlyRootFilesystem   *bool                  `yaml:"readOnlyRootFilesystem"`
	AllowPrivilegeEscalation *bool                  `yaml:"allowPrivilegeEscalation"`
	SeccompProfile           *struct{ Type string } `yaml:"seccompProfile"`
	Sysctls                  []struct{ Name, Value string }
	Capabilities             *struct{ Add, Drop []string }
}

type probe struct {
	HTTPGet *struct {
		Path string
		Port intOrString
	} `yaml:"httpGet"`
	InitialDelaySeconds int `yaml:"initialDelaySeconds"`
	PeriodSeconds       int `yaml:"periodSeconds"`
	TimeoutSeconds      int `yaml:"timeoutSeconds"`
	FailureThreshold    int `yaml:"failureThreshold"`
}

type container struct {
	Name          string
	Image         string
	Command       []string
	Args          []string
	RestartPolicy string `yaml:"restartPolicy"`
	Env           []struct {
		Name      string
		Value     string
		ValueFrom *yaml.Node `yaml:"valueFrom"`
	}
	Ports []struct {
		Name          string
		ContainerPort int `yaml:"containerPort"`
		Protocol      string
	}
	StartupProbe    *probe           `yaml:"startupProbe"`
	ReadinessProbe  *probe           `yaml:"readinessProbe"`
	LivenessProbe   *probe           `yaml:"livenessProbe"`
	SecurityContext *securityContext `yaml:"securityContext"`
	Resources       resources
	VolumeMounts    []struct {
		Name      string
		MountPath string `yaml:"mountPath"`
		SubPath   string `yaml:"subPath"`
		ReadOnly  bool   `yaml:"readOnly"`
	} `yaml:"volumeMounts"`
}

type keyToPath struct {
	Key, Path string
	Mode      *int
}

type objectRef struct {
	Name  string
	Items []keyToPath
}

type volume struct {
	Name      string
	ConfigMap *struct {
		Name        string
		Items       []keyToPath
		DefaultMode *int `yaml:"defaultMode"`
	} `yaml:"configMap"`
	Secret *struct {
		SecretName  string `yaml:"secretName"`
		Items       []keyToPath
		DefaultMode *int `yaml:"defaultMode"`
	}
	Projected *struct {
		DefaultMode *int `yaml:"defaultMode"`
		Sources     []struct {
			Secret    *objectRef
			ConfigMap *objectRef `yaml:"configMap"`
		}
	}
	EmptyDir *struct {
		Medium    string
		SizeLimit string `yaml:"sizeLimit"`
	} `yaml:"emptyDir"`
	PersistentVolumeClaim *struct {
		ClaimName string `yaml:"claimName"`
	} `yaml:"persistentVolumeClaim"`
}

type podSpec struct {
	SecurityContext               *securityContext `yaml:"securityContext"`
	TerminationGracePeriodSeconds *int             `yaml:"terminationGracePeriodSeconds"`
	InitContainers                []container      `yaml:"initContainers"`
	Containers                    []container
	Volumes                       []volume
}

var apiVersions = map[string]string{
	"ConfigMap": "v1", "Secret": "v1", "Service": "v1",
	"Deployment": "apps/v1", "StatefulSet": "apps/v1", "PodDisruptionBudget": "policy/v1",
}

func parseManifest(t *testing.T, rel string) []k8sObject {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(readFile(t, rel)))
	dec.KnownFields(true)
	var objs []k8sObject
	seen := make(map[string]bool)
	for {
		var o k8sObject
		if err := dec.Decode(&o); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("%s: %v", rel, err)
		}
		id := o.Kind + "/" + o.Metadata.Name
		switch {
		case apiVersions[o.Kind] == "":
			t.Errorf("%s: %s: kind not known to this test", rel, id)
		case apiVersions[o.Kind] != o.APIVersion:
			t.Errorf("%s: %s: apiVersion %q, want %q", rel, id, o.APIVersion, apiVersions[o.Kind])
		case o.Metadata.Name == "" || seen[id]:
			t.Errorf("%s: %s: missing or duplicate name", rel, id)
		}
		seen[id] = true
		objs = append(objs, o)
	}
	return objs
}

func find(objs []k8sObject, kind, name string) *k8sObject {
	for i := range objs {
		if objs[i].Kind == kind && objs[i].Metadata.Name == name {
			return &objs[i]
		}
	}
	return nil
}

func workloads(objs []k8sObject) []k8sObject {
	return slices.DeleteFunc(slices.Clone(objs), func(o k8sObject) bool {
		return o.Kind != "Deployment" && o.Kind != "StatefulSet"
	})
}

func selects(sel labelSelector, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func isInkan(c container) bool {
	ref := c.Image[strings.LastIndex(c.Image, "/")+1:]
	name, _, _ := strings.Cut(ref, ":")
	return name == "inkan"
}

// secretData is a Secret's content from the manifest, data decoded.
func secretData(t *testing.T, o *k8sObject) map[string]string {
	m := maps.Clone(o.StringData)
	if m == nil {
		m = make(map[string]string)
	}
	for k, v := range o.Data {
		b, err := base64.StdEncoding.DecodeString(v)
		if err != nil {
			t.Errorf("Secret/%s: data.%s is not base64", o.Metadata.Name, k)
		}
		m[k] = string(b)
	}
	return m
}

// volumeFiles returns the files a volume shows, relative to its mount, and
// whether the manifest lists them all.
func volumeFiles(t *testing.T, objs []k8sObject, v volume) (files map[string]string, complete bool) {
	files = make(map[string]string)
	source := func(kind, name string, items []keyToPath) bool {
		o := find(objs, kind, name)
		var data map[string]string
		switch {
		case o == nil && kind == "ConfigMap":
			t.Errorf("volume %s: ConfigMap %s is not in the manifest", v.Name, name)
			return false
		case o == nil: // a Secret made with kubectl
		case kind == "ConfigMap":
			data = o.Data
		default:
			data = secretData(t, o)
		}
		if len(items) == 0 {
			maps.Copy(files, data)
			return o != nil
		}
		for _, it := range items {
			if _, ok := data[it.Key]; o != nil && !ok {
				t.Errorf("volume %s: %s %s has no key %s", v.Name, kind, name, it.Key)
			}
			files[it.Path] = data[it.Key]
		}
		return true
	}
	switch {
	case v.ConfigMap != nil:
		return files, source("ConfigMap", v.ConfigMap.Name, v.ConfigMap.Items)
	case v.Secret != nil:
		return files, source("Secret", v.Secret.SecretName, v.Secret.Items)
	case v.Projected != nil:
		complete = true
		for _, s := range v.Projected.Sources {
			if s.Secret != nil {
				complete = source("Secret", s.Secret.Name, s.Secret.Items) && complete
			}
			if s.ConfigMap != nil {
				complete = source("ConfigMap", s.ConfigMap.Name, s.ConfigMap.Items) && complete
			}
		}
	}
	return files, complete
}

func TestKubernetes(t *testing.T) {
	img := dockerImage(t)
	files, err := filepath.Glob(filepath.Join(root, "deploy/kubernetes/*.yaml"))
	if err != nil || len(files) < 2 {
		t.Fatalf("manifests: %v %v", files, err)
	}
	for _, f := range files {
		rel, _ := filepath.Rel(root, f)
		t.Run(filepath.Base(f), func(t *testing.T) { checkManifest(t, rel, img) })
	}
}

func checkManifest(t *testing.T, rel string, img image) {
	objs := parseManifest(t, rel)
	ws := workloads(objs)
	if len(ws) == 0 {
		t.Fatal("no Deployment or StatefulSet")
	}
	inks := make(map[string]*podInkan)
	for _, w := range ws {
		where := w.Kind + "/" + w.Metadata.Name
		if w.Spec == nil || w.Spec.Template == nil {
			t.Fatalf("%s: no pod template", where)
		}
		if !selects(w.Spec.Selector, w.Spec.Template.Metadata.Labels) {
			t.Errorf("%s: selector %v does not match the template's labels", where, w.Spec.Selector)
		}
		if w.Kind == "StatefulSet" {
			if s := find(objs, "Service", w.Spec.ServiceName); s == nil || s.Spec.ClusterIP != "None" {
				t.Errorf("%s: serviceName %q is not a headless Service of the manifest", where, w.Spec.ServiceName)
			}
		}
		inks[w.Metadata.Name] = checkPod(t, where, objs, w, img)
	}
	for _, o := range objs {
		switch o.Kind {
		case "Service":
			checkService(t, o, ws, inks)
		case "PodDisruptionBudget":
			if !slices.ContainsFunc(ws, func(w k8sObject) bool { return selects(o.Spec.Selector, w.Spec.Template.Metadata.Labels) }) {
				t.Errorf("PodDisruptionBudget/%s selects no workload", o.Metadata.Name)
			}
		}
	}
}

// podInkan is the inkan container of a pod with its effective config.
type podInkan struct {
	c      container
	ports  map[string]int // container port name -> number
	listen map[string][]string
}

func checkPod(t *testing.T, where string, objs []k8sObject, w k8sObject, img image) *podInkan {
	t.Helper()
	spec := w.Spec.Template.Spec
	vols := make(map[string]volume)
	for _, v := range spec.Volumes {
		vols[v.Name] = v
	}
	for _, vc := range w.Spec.VolumeClaimTemplates {
		vols[vc.Metadata.Name] = volume{Name: vc.Metadata.Name}
	}
	var ink *podInkan
	for i, c := range slices.Concat(spec.InitContainers, spec.Containers) {
		if init := i < len(spec.InitContainers); (init && c.RestartPolicy != "" && c.RestartPolicy != "Always") || (!init && c.RestartPolicy != "") {
			t.Errorf("%s: container %s: restartPolicy %q", where, c.Name, c.RestartPolicy)
		}
		for _, m := range c.VolumeMounts {
			if _, ok := vols[m.Name]; !ok {
				t.Errorf("%s: container %s mounts unknown volume %s", where, c.Name, m.Name)
			}
		}
		if !isInkan(c) {
			continue
		}
		if ink != nil {
			t.Errorf("%s: more than one inkan container", where)
		}
		ink = checkInkanContainer(t, where+" container "+c.Name, objs, spec, vols, c, img)
	}
	if ink == nil {
		t.Fatalf("%s: no container runs the inkan image", where)
	}
	// The app's SMTP_PORT, when it has one, must be inkan's relay port.
	for _, c := range slices.Concat(spec.InitContainers, spec.Containers) {
		for _, e := range c.Env {
			if e.Name == "SMTP_PORT" && !slices.Contains(ink.listen["relay"], e.Value) {
				t.Errorf("%s: container %s sends to port %s, inkan relays on %v", where, c.Name, e.Value, ink.listen["relay"])
			}
		}
	}
	return ink
}

func checkInkanContainer(t *testing.T, where string, objs []k8sObject, spec podSpec, vols map[string]volume, c container, img image) *podInkan {
	t.Helper()
	argv := c.Command
	if len(argv) == 0 {
		argv = slices.Clone(img.entrypoint)
		if len(c.Args) == 0 {
			argv = append(argv, img.cmd...)
		}
	}
	argv = append(argv, c.Args...)
	if len(argv) < 2 || argv[0] != "/inkan" || argv[1] != "serve" {
		t.Errorf("%s: runs %q, want /inkan serve", where, argv)
	}
	checkSecurity(t, where, spec.SecurityContext, c.SecurityContext)

	view := newFSView()
	modes := make(map[string]fs.FileMode) // files of Secret and ConfigMap volumes
	writable := make(map[string]volume)   // by mount path
	for _, m := range c.VolumeMounts {
		v := vols[m.Name]
		if v.EmptyDir != nil || v.PersistentVolumeClaim != nil || (v.ConfigMap == nil && v.Secret == nil && v.Projected == nil) {
			view.writable = append(view.writable, m.MountPath)
			writable[m.MountPath] = v
			continue
		}
		files, complete := volumeFiles(t, objs, v)
		for p, content := range files {
			if m.SubPath == "" {
				view.addFile(path.Join(m.MountPath, p), content, true)
				modes[path.Join(m.MountPath, p)] = fileMode(v, p, spec.SecurityContext)
			} else if p == m.SubPath {
				view.addFile(m.MountPath, content, true)
				modes[m.MountPath] = fileMode(v, p, spec.SecurityContext)
			}
		}
		if !complete && m.SubPath == "" {
			view.opaque = append(view.opaque, m.MountPath)
		}
		checkSecretMode(t, where+" volume "+v.Name, spec.SecurityContext, v)
	}

	env := maps.Clone(img.env)
	for _, e := range c.Env {
		if e.ValueFrom != nil && strings.HasPrefix(e.Name, "INKAN_") {
			t.Errorf("%s: %s uses valueFrom; the test cannot follow it (use a *_FILE variable and a volume)", where, e.Name)
		}
		env[e.Name] = e.Value
	}
	cfg, err := loadConfig(t, env, view.content)
	if err != nil {
		t.Fatalf("%s: the configuration does not load: %v", where, err)
	}
	checkConfigFiles(t, where, cfg, view)
	for _, w := range cfg.Warnings() {
		t.Errorf("%s: inkan check warns: %s", where, w)
	}
	checkTrust(t, where, cfg, podProcess(spec.SecurityContext, c.SecurityContext, img), spec.SecurityContext, modes, writable)

	ink := &podInkan{c: c, ports: make(map[string]int)}
	ls := listeners(t, cfg)
	ink.listen = listenPorts(ls)
	for _, p := range c.Ports {
		ink.ports[p.Name] = p.ContainerPort
		if !slices.Contains(slices.Concat(slices.Collect(maps.Values(ink.listen))...), strconv.Itoa(p.ContainerPort)) {
			t.Errorf("%s: containerPort %d: inkan does not listen there (%v)", where, p.ContainerPort, ink.listen)
		}
	}
	for _, l := range ls {
		n, _ := strconv.Atoi(l.port)
		if l.loopback {
			if l.kind == "http" {
				t.Errorf("%s: listen.http is on loopback, the kubelet's probes cannot reach it", where)
			}
			continue
		}
		if n < 1024 && !unprivilegedPort(spec.SecurityContext, n) {
			t.Errorf("%s: listen.%s port %s needs the pod sysctl net.ipv4.ip_unprivileged_port_start (capabilities are dropped)", where, l.kind, l.port)
		}
		if !slices.Contains(slices.Collect(maps.Values(ink.ports)), n) {
			t.Errorf("%s: listen.%s port %s is not declared in ports", where, l.kind, l.port)
		}
	}
	checkProbes(t, where, ink)
	return ink
}

func checkProbes(t *testing.T, where string, ink *podInkan) {
	t.Helper()
	probes := []struct {
		name, path string
		p          *probe
		required   bool
	}{
		{"readinessProbe", "/readyz", ink.c.ReadinessProbe, true},
		{"livenessProbe", "/healthz", ink.c.LivenessProbe, true},
		{"startupProbe", "/readyz", ink.c.StartupProbe, false},
	}
	for _, pr := range probes {
		switch {
		case pr.p == nil && pr.required:
			t.Errorf("%s: no %s", where, pr.name)
		case pr.p == nil:
		case pr.p.HTTPGet == nil || pr.p.HTTPGet.Path != pr.path:
			t.Errorf("%s: %s must be httpGet %s", where, pr.name, pr.path)
		default:
			port, err := strconv.Atoi(string(pr.p.HTTPGet.Port))
			if err != nil {
				var ok bool
				if port, ok = ink.ports[string(pr.p.HTTPGet.Port)]; !ok {
					t.Errorf("%s: %s port %q is not a container port", where, pr.name, pr.p.HTTPGet.Port)
				}
			}
			if !slices.Contains(ink.listen["http"], strconv.Itoa(port)) {
				t.Errorf("%s: %s probes port %d, listen.http is %v", where, pr.name, port, ink.listen["http"])
			}
		}
	}
}

func checkSecurity(t *testing.T, where string, pod, c *securityContext) {
	t.Helper()
	if pod == nil {
		pod = &securityContext{}
	}
	if c == nil {
		c = &securityContext{}
	}
	isTrue := func(a, b *bool) bool {
		if a != nil {
			return *a
		}
		return b != nil && *b
	}
	if !isTrue(c.RunAsNonRoot, pod.RunAsNonRoot) {
		t.Errorf("%s: runAsNonRoot is not set", where)
	}
	if u := c.RunAsUser; (u != nil && *u == 0) || (u == nil && pod.RunAsUser != nil && *pod.RunAsUser == 0) {
		t.Errorf("%s: runs as root", where)
	}
	if c.ReadOnlyRootFilesystem == nil || !*c.ReadOnlyRootFilesystem {
		t.Errorf("%s: readOnlyRootFilesystem is not true", where)
	}
	if c.AllowPrivilegeEscalation == nil || *c.AllowPrivilegeEscalation {
		t.Errorf("%s: allowPrivilegeEscalation is not false", where)
	}
	if c.Capabilities == nil || !slices.Equal(c.Capabilities.Drop, []string{"ALL"}) || len(c.Capabilities.Add) > 0 {
		t.Errorf("%s: capabilities must drop ALL and add none", where)
	}
}

// podProcess is the user and groups inkan runs as in the pod: runAsUser and
// runAsGroup (the container's, else the pod's, else the image's USER) and
// fsGroup.
func podProcess(pod, c *securityContext, img image) safefile.Process {
	if pod == nil {
		pod = &securityContext{}
	}
	if c == nil {
		c = &securityContext{}
	}
	imgUser, imgGroup, _ := strings.Cut(img.user, ":")
	uid, _ := strconv.Atoi(imgUser)
	gid, _ := strconv.Atoi(imgGroup)
	for _, v := range []*int64{pod.RunAsUser, c.RunAsUser} {
		if v != nil {
			uid = int(*v)
		}
	}
	for _, v := range []*int64{pod.RunAsGroup, c.RunAsGroup} {
		if v != nil {
			gid = int(*v)
		}
	}
	p := safefile.Process{UID: uid, Groups: []int{gid}}
	if pod.FSGroup != nil {
		p.Groups = append(p.Groups, int(*pod.FSGroup))
	}
	return p
}

// fileMode is the mode the kubelet gives file p of a Secret or ConfigMap
// volume: the item's mode, else defaultMode, else 0644; with fsGroup, group
// read is added (the volume is read-only) and the group is fsGroup.
func fileMode(v volume, p string, pod *securityContext) fs.FileMode {
	mode := 0o644
	var items []keyToPath
	switch {
	case v.Secret != nil:
		items = v.Secret.Items
		if v.Secret.DefaultMode != nil {
			mode = *v.Secret.DefaultMode
		}
	case v.ConfigMap != nil:
		items = v.ConfigMap.Items
		if v.ConfigMap.DefaultMode != nil {
			mode = *v.ConfigMap.DefaultMode
		}
	case v.Projected != nil:
		if v.Projected.DefaultMode != nil {
			mode = *v.Projected.DefaultMode
		}
		for _, src := range v.Projected.Sources {
			for _, ref := range []*objectRef{src.Secret, src.ConfigMap} {
				if ref != nil {
					items = append(items, ref.Items...)
				}
			}
		}
	}
	for _, it := range items {
		if it.Path == p && it.Mode != nil {
			mode = *it.Mode
		}
	}
	if pod != nil && pod.FSGroup != nil {
		mode |= 0o440
	}
	return fs.FileMode(mode)
}

// checkTrust runs the binary's own rule (safefile.Check) on what the pod
// gives inkan: the users file, root-owned with the mode and fsGroup the
// kubelet gives it, and the data directory, which is either a volume's root
// (root-owned, fsGroup; an emptyDir is 0777, a new disk's root 0755, both
// plus group write) or a folder inkan creates below one (its own, 0700).
func checkTrust(t *testing.T, where string, cfg *config.Config, proc safefile.Process, pod *securityContext, modes map[string]fs.FileMode, writable map[string]volume) {
	t.Helper()
	fsGroup := -1
	if pod != nil && pod.FSGroup != nil {
		fsGroup = int(*pod.FSGroup)
	}
	if p := cfg.Auth.UsersFile; p != "" {
		if mode, ok := modes[p]; ok {
			if err := proc.CheckMode("users file", p, mode, 0, fsGroup); err != nil {
				t.Errorf("%s: inkan would refuse auth.users_file: %v", where, err)
			}
		}
	}
	if v, ok := writable[cfg.DataDir]; ok {
		mode := fs.ModeDir | 0o755
		if v.EmptyDir != nil {
			mode = fs.ModeDir | 0o777
		}
		if fsGroup >= 0 {
			mode |= 0o070
		}
		if err := proc.CheckMode("data directory", cfg.DataDir, mode, 0, fsGroup); err != nil {
			t.Errorf("%s: inkan would refuse data_dir (the root of a volume): %v; use a folder below it, which inkan creates", where, err)
		}
	}
}

// checkSecretMode: inkan refuses keys every user may read, and secret files
// belong to root, so inkan reads them through fsGroup.
func checkSecretMode(t *testing.T, where string, pod *securityContext, v volume) {
	t.Helper()
	var mode *int
	switch {
	case v.Secret != nil:
		mode = v.Secret.DefaultMode
	case v.Projected != nil:
		mode = v.Projected.DefaultMode
	default:
		return
	}
	if mode == nil || *mode&0o007 != 0 {
		t.Errorf("%s: defaultMode must deny other users (0440); Kubernetes defaults to 0644", where)
	}
	if pod == nil || pod.FSGroup == nil {
		t.Errorf("%s: secrets are owned by root; set the pod's fsGroup so inkan can read them", where)
	}
}

func checkService(t *testing.T, s k8sObject, ws []k8sObject, inks map[string]*podInkan) {
	t.Helper()
	where := "Service/" + s.Metadata.Name
	var pods []k8sObject
	for _, w := range ws {
		if selects(s.Spec.Selector, w.Spec.Template.Metadata.Labels) {
			pods = append(pods, w)
		}
	}
	if len(pods) == 0 {
		t.Errorf("%s selects no workload", where)
		return
	}
	if s.Spec.Type == "LoadBalancer" && s.Spec.ExternalTrafficPolicy != "Local" {
		t.Errorf("%s: a LoadBalancer needs externalTrafficPolicy: Local, or trusted_networks sees node addresses", where)
	}
	for _, p := range s.Spec.Ports {
		for _, w := range pods {
			ink := inks[w.Metadata.Name]
			target := string(p.TargetPort)
			port, err := strconv.Atoi(target)
			if err != nil {
				var ok bool
				if port, ok = ink.ports[target]; !ok {
					t.Errorf("%s: port %s targets %q, not a port of %s", where, p.Name, target, w.Metadata.Name)
					continue
				}
			}
			if kind := standardPorts[p.Port]; kind != "" && !slices.Contains(ink.listen[kind], strconv.Itoa(port)) {
				t.Errorf("%s: port %d goes to %d, but listen.%s is %v", where, p.Port, port, kind, ink.listen[kind])
			}
		}
	}
}

// unprivilegedPort reports whether a process without capabilities may bind
// port in the pod.
func unprivilegedPort(pod *securityContext, port int) bool {
	if pod == nil {
		return false
	}
	for _, s := range pod.Sysctls {
		if s.Name == "net.ipv4.ip_unprivileged_port_start" {
			start, err := strconv.Atoi(s.Value)
			return err == nil && port >= start
		}
	}
	return false
}
