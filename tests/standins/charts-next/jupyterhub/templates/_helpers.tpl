{{- define "standin.labels" -}}
app.kubernetes.io/name: jupyterhub
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
datalab.notebooks/standin: "true"
{{- end }}

{{- define "standin.deployment" -}}
{{- $root := index . 0 -}}
{{- $component := index . 1 -}}
{{- $cfg := index . 2 | default dict -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $component }}
  labels:
    {{- include "standin.labels" $root | nindent 4 }}
    component: {{ $component }}
spec:
  replicas: 1
  strategy:
    type: Recreate
  selector:
    matchLabels:
      app.kubernetes.io/instance: {{ $root.Release.Name }}
      component: {{ $component }}
  template:
    metadata:
      labels:
        {{- $podLabels := merge (dict "app.kubernetes.io/instance" $root.Release.Name "component" $component) ($cfg.labels | default dict) }}
        {{- toYaml $podLabels | nindent 8 }}
      {{- with $cfg.annotations }}
      annotations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    spec:
      automountServiceAccountToken: false
      containers:
        - name: {{ $component }}
          # Never runs: the test bed's nodes are simulated. The real chart's images are not used.
          image: registry.k8s.io/pause:3.10.1
          ports:
            - name: http
              containerPort: 8000
{{- end }}
