//! Grouping and reading replies, deterministically (no store).

use mongodb::bson::oid::ObjectId;

use super::*;

fn write(id: i32, fence: i32) -> ById {
    ById {
        id: Bson::Int32(id),
        fence: doc! { "v": fence },
        update: doc! { "$set": { "x": 1 } },
        narrow: doc! { "owner": "me" },
    }
}

#[test]
fn alike_writes_share_a_statement_in_order_of_their_first_and_a_lone_write_stays_plain() {
    let writes = [write(1, 1), write(2, 2), write(3, 1), write(4, 1)];
    let grouped = statements(&writes);
    assert_eq!(grouped.len(), 2);
    assert_eq!(grouped[0].members, [0, 2, 3]);
    assert_eq!(
        grouped[0].doc,
        doc! {
            "q": { "_id": { "$in": [1, 3, 4] }, "v": 1, "owner": "me" },
            "u": { "$set": { "x": 1 } }, "multi": true,
        }
    );
    assert_eq!(grouped[1].members, [1]);
    assert_eq!(
        grouped[1].doc,
        doc! { "q": { "_id": 2, "v": 2 }, "u": { "$set": { "x": 1 } } },
        "no narrowing: its `_id` equality is pushed down already"
    );
}

#[test]
fn writes_differing_in_their_update_or_narrowing_are_not_grouped() {
    let mut other_update = write(2, 1);
    other_update.update = doc! { "$set": { "x": 2 } };
    let mut other_owner = write(3, 1);
    other_owner.narrow = doc! { "owner": "them" };
    let grouped = statements(&[write(1, 1), other_update, other_owner]);
    let members: Vec<Vec<usize>> = grouped.into_iter().map(|s| s.members).collect();
    assert_eq!(members, [vec![0], vec![1], vec![2]]);
}

#[test]
fn a_group_holds_at_most_max_ids() {
    let writes: Vec<ById> = (0..(MAX_IDS as i32 * 2 + 1)).map(|i| write(i, 1)).collect();
    let grouped = statements(&writes);
    let sizes: Vec<usize> = grouped.iter().map(|s| s.members.len()).collect();
    assert_eq!(sizes, [MAX_IDS, MAX_IDS, 1]);
    let ids = |s: &Statement| s.doc.get_document("q").unwrap().get("_id").cloned();
    assert_eq!(ids(&grouped[2]), Some(Bson::Int32(MAX_IDS as i32 * 2)));
    // Every write in exactly one statement.
    let mut all: Vec<usize> = grouped.into_iter().flat_map(|s| s.members).collect();
    all.sort_unstable();
    assert_eq!(all, (0..writes.len()).collect::<Vec<_>>());
}

#[test]
fn ids_of_any_kind_group_by_their_fence_only() {
    let (a, b) = (ObjectId::new(), ObjectId::new());
    let writes = [a, b].map(|id| ById {
        id: Bson::ObjectId(id),
        ..write(0, 1)
    });
    let grouped = statements(&writes);
    assert_eq!(grouped.len(), 1);
    let q = grouped[0].doc.get_document("q").unwrap();
    assert_eq!(q.get_document("_id").unwrap(), &doc! { "$in": [a, b] });
}

#[test]
fn each_statements_write_error_is_found_by_its_index() {
    let reply = doc! {
        "n": 2, "nModified": 2, "ok": 1.0,
        "writeErrors": [
            { "index": 1, "code": 121, "errmsg": "Document failed validation" },
            { "index": 3_i64, "code": 2, "errmsg": "bad" },
            { "index": 99, "code": 2, "errmsg": "out of range: ignored" },
        ],
    };
    let refused = write_errors(&reply, 4).unwrap();
    let codes: Vec<Option<i32>> = refused.iter().map(|e| e.as_ref().map(|e| e.code)).collect();
    assert_eq!(codes, [None, Some(121), None, Some(2)]);
}

#[test]
fn a_reply_without_write_errors_refuses_nothing_and_a_write_concern_error_fails_all() {
    let clean = write_errors(&doc! { "n": 3, "ok": 1.0 }, 3).unwrap();
    assert_eq!(clean, [None, None, None]);
    let concern = doc! { "ok": 1.0, "writeConcernError": { "code": 64, "errmsg": "waiting" } };
    assert!(write_errors(&concern, 3).is_err());
}

#[test]
fn a_replys_count_is_read_whatever_its_number_type() {
    assert_eq!(count(Some(&Bson::Int32(3))), 3);
    assert_eq!(count(Some(&Bson::Int64(4))), 4);
    assert_eq!(count(Some(&Bson::Double(5.0))), 5);
    assert_eq!(count(None), 0);
}
