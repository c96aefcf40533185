//! The OpenAPI 3.0 document served at `GET /openapi.json` (hand-written JSON; the limits
//! in it are the server's own).

use serde_json::{Value, json};

use crate::config::ServeConfig;

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    })
}

/// The document for a server configured with `cfg`.
pub fn document(cfg: &ServeConfig) -> Value {
    let predict_responses = json!({
        "200": {
            "description": "The prediction. A clip without audio is predicted from video \
                alone (`audio_present: false`, `per_modality.audio: null`).",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Prediction"}}}
        },
        "400": error_response("Malformed request: bad multipart body, no `file` field, \
            empty upload, bad JSON (`bad_multipart`, `missing_file`, `empty_upload`, \
            `bad_json`, `upload_interrupted`)."),
        "403": error_response("Server-side path outside the allowed directory, with `..`, \
            or paths disabled (`path_not_allowed`)."),
        "404": error_response("Server-side path not found (`not_found`)."),
        "413": error_response(&format!(
            "Upload larger than {} bytes (`payload_too_large`).", cfg.max_upload_bytes)),
        "415": error_response("Unsupported Content-Type (`unsupported_media_type`)."),
        "422": error_response(&format!(
            "Not a usable video: `invalid_media` (not a media file, corrupt, truncated), \
             `no_video_stream`, `no_frames`, `clip_too_long` (over {} s), `frame_too_large` \
             (over {} pixels or {} px a side, from the stream header), \
             `no_usable_modality`.",
            cfg.max_duration_s, cfg.max_frame_pixels, cfg.max_frame_side)),
        "500": error_response("A fault of the service (`internal`, `model`, `io`)."),
        "503": {
            "description": "Too many requests in the service (`overloaded`); retry after \
                the `Retry-After` seconds.",
            "headers": {"Retry-After": {"schema": {"type": "integer"}}},
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
        },
        "504": error_response(&format!(
            "The request took longer than {} s (`timeout`).", cfg.request_timeout_s)),
    });
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "avfuse inference service",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Audio-visual deepfake detection: a video clip in, a calibrated \
                fake probability out, with the probability of each modality alone and of \
                each window of the clip. Every request gets an `x-request-id` (the client's \
                own, else a new UUID), echoed in the response."
        },
        "paths": {
            "/v1/predict": {
                "post": {
                    "operationId": "predict",
                    "summary": "Predict on one video clip",
                    "requestBody": {
                        "required": true,
                        "content": {
                            "multipart/form-data": {
                                "schema": {
                                    "type": "object",
                                    "required": ["file"],
                                    "properties": {"file": {"type": "string", "format": "binary"}}
                                }
                            },
                            "video/*": {"schema": {"type": "string", "format": "binary"}},
                            "application/octet-stream": {
                                "schema": {"type": "string", "format": "binary"}
                            },
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/PathRequest"}
                            }
                        }
                    },
                    "responses": predict_responses
                }
            },
            "/healthz": {
                "get": {
                    "operationId": "healthz",
                    "summary": "Liveness and load",
                    "responses": {"200": {
                        "description": "The service is up.",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}}
                    }}
                }
            },
            "/v1/model": {
                "get": {
                    "operationId": "model",
                    "summary": "The served checkpoint",
                    "responses": {"200": {
                        "description": "Name, versions, configuration, validation metrics, \
                            data layout and preprocessing of the checkpoint.",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Model"}}}
                    }}
                }
            },
            "/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document",
                    "responses": {"200": {
                        "description": "OpenAPI 3.0 document.",
                        "content": {"application/json": {"schema": {"type": "object"}}}
                    }}
                }
            }
        },
        "components": {"schemas": {
            "Prediction": {
                "type": "object",
                "required": ["path", "fake_probability", "label", "per_modality", "windows",
                             "faces_found", "audio_present", "ms"],
                "properties": {
                    "path": {"type": "string", "description": "The file as the client named it."},
                    "fake_probability": {"type": "number", "minimum": 0, "maximum": 1,
                        "description": "Mean of the windows' probabilities."},
                    "label": {"type": "string", "description": "Label name at the threshold."},
                    "per_modality": {
                        "type": "object",
                        "required": ["video", "audio"],
                        "properties": {
                            "video": {"type": "number", "nullable": true},
                            "audio": {"type": "number", "nullable": true}
                        }
                    },
                    "windows": {"type": "array", "items": {
                        "type": "object",
                        "required": ["start_s", "end_s", "fake_probability"],
                        "properties": {
                            "start_s": {"type": "number"},
                            "end_s": {"type": "number"},
                            "fake_probability": {"type": "number", "minimum": 0, "maximum": 1}
                        }
                    }},
                    "faces_found": {"type": "integer", "minimum": 0,
                        "description": "Frames where the face detector found a face."},
                    "audio_present": {"type": "boolean"},
                    "class_probabilities": {"type": "object",
                        "additionalProperties": {"type": "number", "minimum": 0, "maximum": 1},
                        "description": "Multi-class checkpoints only: mean class \
                            probabilities by class name; the first class is the real one."},
                    "ms": {"type": "number", "description": "Preprocessing and inference time."}
                }
            },
            "PathRequest": {
                "type": "object",
                "required": ["path"],
                "additionalProperties": false,
                "properties": {"path": {"type": "string",
                    "description": "A file inside the server's allowed directory (relative \
                        to it, or absolute); no `..`."}}
            },
            "Error": {
                "type": "object",
                "required": ["error", "detail"],
                "properties": {
                    "error": {"type": "string", "description": "Machine-readable kind."},
                    "detail": {"type": "string", "description": "One-line explanation."}
                }
            },
            "Health": {
                "type": "object",
                "required": ["status"],
                "properties": {
                    "status": {"type": "string", "enum": ["ok"]},
                    "uptime_s": {"type": "number"},
                    "workers": {"type": "integer"},
                    "queue_depth": {"type": "integer"},
                    "running": {"type": "integer"},
                    "waiting": {"type": "integer"},
                    "predicted": {"type": "integer"},
                    "failed": {"type": "integer"},
                    "rejected_busy": {"type": "integer"}
                }
            },
            "Model": {
                "type": "object",
                "required": ["name", "versions", "config", "metrics"],
                "properties": {
                    "name": {"type": "string"},
                    "checkpoint": {"type": "string"},
                    "versions": {"type": "object", "additionalProperties": {"type": "string"}},
                    "epoch": {"type": "integer"},
                    "step": {"type": "integer"},
                    "labels": {"type": "array", "items": {"type": "string"}},
                    "threshold": {"type": "number"},
                    "metrics": {"type": "object"},
                    "config": {"type": "object"},
                    "layout": {"type": "object"},
                    "normalizer": {"type": "object"},
                    "modalities": {"type": "object"},
                    "preprocessing": {"type": "object"},
                    "preprocessing_source": {},
                    "windows": {"type": "object"},
                    "device": {"type": "string"}
                }
            }
        }}
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_and_reference_resolves() {
        let d = document(&ServeConfig::default());
        assert_eq!(d["openapi"], "3.0.3");
        for p in ["/v1/predict", "/healthz", "/v1/model", "/openapi.json"] {
            assert!(d["paths"][p].is_object(), "{p}");
        }
        // Every $ref points at a defined schema.
        fn refs(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::Object(m) => {
                    for (k, x) in m {
                        if k == "$ref" {
                            out.push(x.as_str().unwrap_or_default().to_string());
                        }
                        refs(x, out);
                    }
                }
                Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
                _ => {}
            }
        }
        let mut all = Vec::new();
        refs(&d, &mut all);
        assert!(all.len() > 10);
        for r in all {
            let name = r.trim_start_matches("#/components/schemas/");
            assert!(d["components"]["schemas"][name].is_object(), "{r}");
        }
        let codes: Vec<&String> = d["paths"]["/v1/predict"]["post"]["responses"]
            .as_object()
            .unwrap()
            .keys()
            .collect();
        for c in ["200", "413", "415", "422", "503", "504"] {
            assert!(codes.iter().any(|k| k.as_str() == c), "{c}");
        }
    }
}
