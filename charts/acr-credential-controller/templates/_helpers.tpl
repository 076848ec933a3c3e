{{/* The chart name, or nameOverride. */}}
{{- define "acr-credential-controller.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The prefix of every object name: fullnameOverride, else the release name (plus the chart name unless the release name contains it). */}}
{{- define "acr-credential-controller.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "acr-credential-controller.selectorLabels" -}}
app.kubernetes.io/name: {{ include "acr-credential-controller.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "acr-credential-controller.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "acr-credential-controller.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The controller's ServiceAccount name. */}}
{{- define "acr-credential-controller.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "acr-credential-controller.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The username the API server sees for the controller. */}}
{{- define "acr-credential-controller.username" -}}
system:serviceaccount:{{ .Release.Namespace }}:{{ include "acr-credential-controller.serviceAccountName" . }}
{{- end }}

{{- define "acr-credential-controller.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Where the controller reads the ACK add-on token (its built-in default). */}}
{{- define "acr-credential-controller.managedTokenDir" -}}/var/addon{{- end }}
{{/* Where the controller reads the RRSA token when a policy names no tokenFile (its built-in default). */}}
{{- define "acr-credential-controller.rrsaTokenDir" -}}/var/run/secrets/ack.alibabacloud.com/rrsa-tokens{{- end }}

{{- /* The webhook's Service, certificate Secret and MutatingWebhookConfiguration names. */}}
{{- define "acr-credential-controller.webhookServiceName" -}}
{{ include "acr-credential-controller.fullname" . }}-webhook
{{- end }}
{{- define "acr-credential-controller.webhookSecretName" -}}
{{- /* webhook.secretName: the deprecated spelling, honoured when set. */ -}}
{{ .Values.webhook.secretName | default .Values.webhook.certificateSecretName | default (printf "%s-webhook-tls" (include "acr-credential-controller.fullname" .)) }}
{{- end }}
{{- define "acr-credential-controller.webhookConfigurationName" -}}
{{ include "acr-credential-controller.fullname" . }}
{{- end }}
{{- /* The controller mints and rotates the webhook's certificate (not cert-manager). */}}
{{- define "acr-credential-controller.webhookManagesCerts" -}}
{{- if and .Values.webhook.enabled (not .Values.webhook.certManager.enabled) }}true{{ end }}
{{- end }}

{{/*
The ACK add-on's token Secret (managedRole source). credentials.managedRole.secretName is the
deprecated spelling of tokenSecretName, honoured when set.
*/}}
{{- define "acr-credential-controller.managedRoleTokenSecretName" -}}
{{ .Values.credentials.managedRole.secretName | default .Values.credentials.managedRole.tokenSecretName }}
{{- end }}
